"""A small Docker Engine API client on http.client: JSON, streams, hijacked connections.

Why our own: the engine needs a handful of endpoints, streamed bodies and hijacked
connections, and nothing else; a dependency would cost more than these two hundred lines.
Where the daemon is comes from address.py, the pipe to it from transport.py (unix, tcp,
TLS, ssh). Guarantees: every request goes to a versioned path (`/v1.41/...`) negotiated
once with the daemon; a failed request raises one of our error types (see `errors.py`); a daemon that
cannot be reached raises `EngineUnavailable` naming the address.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote, urlencode

from pytest_isobox.docker import transport
from pytest_isobox.docker.address import DaemonAddress, resolve_address
from pytest_isobox.docker.errors import raise_for_response
from pytest_isobox.engine import EngineUnavailable, IsoboxError

MAX_API_VERSION = "1.43"  # the newest API this client was written against
MIN_API_VERSION = "1.30"  # Docker 17.06: `condition` on wait (1.41 adds one-shot stats)
DEFAULT_TIMEOUT = 120.0

Query = dict[str, object] | list[tuple[str, object]] | None
Body = bytes | IO[bytes] | dict | list | None


class _DaemonHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over whatever pipe `transport.dial` gives (unix, tcp, TLS, ssh)."""

    def __init__(self, address: DaemonAddress, timeout: float | None) -> None:
        super().__init__(address.host or "localhost", timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = transport.dial(self._address, self.timeout)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def negotiate_api_version(base_url: str, server_api: str) -> str:
    """The API version to speak: the older of ours and the daemon's, as Docker's CLI does."""
    try:
        chosen = min(MAX_API_VERSION, server_api, key=_version_tuple)
    except ValueError:
        raise EngineUnavailable(
            f"no Docker daemon at {base_url}: it reported API version {server_api!r}") from None
    if _version_tuple(chosen) < _version_tuple(MIN_API_VERSION):
        raise EngineUnavailable(
            f"the Docker daemon at {base_url} speaks API {server_api}; "
            f"isobox needs {MIN_API_VERSION} or newer (Docker 17.06+)")
    return chosen


@dataclass
class HijackedStream:
    """A connection the daemon turned into a raw byte pipe (attach, exec).

    Nothing of the stream has been read yet: read it from and write stdin to `sock`;
    `close_stdin()` half-closes it so the process inside sees end of file.
    """

    sock: socket.socket

    def close_stdin(self) -> None:
        transport.close_write(self.sock)

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes; b"" once the daemon ended the stream (TLS: its close_notify)."""
        try:
            return self.sock.recv(size)
        except ssl.SSLZeroReturnError:
            return b""

    def pending(self) -> bool:
        """Whether bytes already decrypted wait in the TLS layer (select does not see them)."""
        return bool(getattr(self.sock, "pending", lambda: 0)())

    def close(self) -> None:
        self.sock.close()


class DockerClient:
    """Requests to one daemon. Safe to share between threads (idle connections are pooled)
    and across fork (a child never reuses its parent's connections)."""

    def __init__(self, base_url: str | DaemonAddress | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = base_url if isinstance(base_url, DaemonAddress) \
            else resolve_address(base_url)
        self.base_url = self.address.url
        self.timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        info = json.loads(self.request("GET", "/version", versioned=False))
        self.version_info: dict = info
        self.server_version: str = info.get("Version", "")
        self.api_version = negotiate_api_version(self.base_url, info.get("ApiVersion", ""))

    # ------------------------------------------------------------------ connections

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        conn = _DaemonHTTPConnection(self.address, timeout)
        conn.connect()  # raises EngineUnavailable naming the address
        return conn

    def _checkout(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop(), True
        return self._connect(self.timeout), False

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # ------------------------------------------------------------------ requests

    def url(self, path: str, query: Query = None, *, versioned: bool = True) -> str:
        prefix = f"/v{self.api_version}" if versioned else ""
        items = query.items() if isinstance(query, dict) else (query or [])
        pairs = [(k, _query_value(v)) for k, v in items if v is not None]
        return prefix + quote(path, safe="/:@") + (("?" + urlencode(pairs)) if pairs else "")

    def _send(
        self, conn: http.client.HTTPConnection, method: str, url: str, body: Body,
        headers: dict[str, str],
    ) -> None:
        headers = dict(headers)
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        if body is None and method in ("POST", "PUT"):
            body = b""
        conn.request(method, url, body=body, headers=headers)  # files: caller gives the length

    def request(
        self, method: str, path: str, query: Query = None, body: Body = None, *,
        headers: dict[str, str] | None = None, versioned: bool = True, kind: str = "",
        timeout: float | None = None,
    ) -> bytes:
        """One request whose whole response body is read; errors raised as our types.

        `kind` names what the path refers to (image, container, network, volume, exec) so a
        bare 404 becomes the matching *NotFound. Reused connections that the daemon closed
        while idle are retried once on a fresh one, before anything was read.
        """
        url = self.url(path, query, versioned=versioned)
        for attempt in (0, 1):
            conn, reused = self._checkout()
            sock = conn.sock  # http.client drops it on a failed response; ssh says why
            if timeout is not None:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
            try:
                self._send(conn, method, url, body, headers or {})
                resp = conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.RemoteDisconnected) as exc:
                if reused and attempt == 0 and not hasattr(body, "read"):
                    conn.close()
                    continue
                why = transport.why_closed(sock) or str(exc)
                conn.close()
                raise EngineUnavailable(f"Docker daemon at {self.address.describe()} dropped "
                                        f"{method} {path}: {why}") from None
            except ssl.SSLError as exc:  # TLS 1.3: a refused client certificate shows here
                conn.close()
                raise EngineUnavailable(f"no Docker daemon at {self.address.describe()}: TLS "
                                        f"refused: {exc.reason or exc}") from None
            except BaseException:
                conn.close()
                raise
            if timeout is not None and conn.sock is not None:
                conn.sock.settimeout(self.timeout)
                conn.timeout = self.timeout
            if resp.will_close:
                conn.close()
            else:
                self._checkin(conn)
            raise_for_response(resp.status, data, kind=kind)
            return data
        raise AssertionError("unreachable")

    def get_json(self, path: str, query: Query = None, *, kind: str = "") -> Any:
        """The decoded JSON body of a GET (None when empty)."""
        data = self.request("GET", path, query, kind=kind)
        return json.loads(data) if data else None

    def post_json(self, path: str, query: Query = None, body: Body = None, *,
                  kind: str = "") -> Any:
        """The decoded JSON body of a POST (None when empty)."""
        data = self.request("POST", path, query, body, kind=kind)
        return json.loads(data) if data else None

    def open_stream(
        self, method: str, path: str, query: Query = None, body: Body = None, *,
        headers: dict[str, str] | None = None, kind: str = "", timeout: float | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request on a private connection and return once the response headers came.

        The body is left to the caller, who closes the connection.
        """
        conn = self._connect(timeout)
        try:
            self._send(conn, method, self.url(path, query), body, headers or {})
            resp = conn.getresponse()
            if resp.status >= 400:
                raise_for_response(resp.status, resp.read(), kind=kind)
        except BaseException:
            conn.close()
            raise
        return conn, resp

    @contextmanager
    def stream(
        self, method: str, path: str, query: Query = None, body: Body = None, *,
        headers: dict[str, str] | None = None, kind: str = "", timeout: float | None = None,
    ) -> Iterator[http.client.HTTPResponse]:
        """A response to read as it arrives (logs, build progress, image archives).

        The connection is private to the stream and closed when the block ends.
        """
        conn, resp = self.open_stream(method, path, query, body, headers=headers, kind=kind,
                                      timeout=timeout)
        try:
            yield resp
        finally:
            conn.close()

    def hijack(self, path: str, query: Query = None, body: Body = None, *,
               kind: str = "") -> HijackedStream:
        """POST with `Upgrade: tcp`; the daemon answers 101 and the socket becomes the stream.

        The response head is read byte by byte so that no byte of the stream is buffered away.
        """
        conn = self._connect(None)
        sock = conn.sock
        try:
            self._send(conn, "POST", self.url(path, query), body,
                       {"Connection": "Upgrade", "Upgrade": "tcp"})
            status, length = _read_response_head(sock)
            if status >= 400:
                raise_for_response(status, _recv_exactly(sock, length), kind=kind)
            if status not in (101, 200):
                raise IsoboxError(f"Docker daemon did not upgrade {path}: HTTP {status}")
        except BaseException:
            sock.close()
            raise
        conn.sock = None  # the socket now belongs to the stream
        return HijackedStream(sock)


def _read_response_head(sock: socket.socket) -> tuple[int, int]:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise IsoboxError(f"Docker daemon closed the connection mid-response: {head!r}")
        head += byte
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length":
            length = int(value.strip())
    return status, length


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = sock.recv(size - len(data))
        if not piece:
            break
        data += piece
    return data


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def iter_json_stream(resp: IO[bytes]) -> Iterator[dict]:
    """Objects of a JSON stream (build and load progress): concatenated or newline-separated."""
    decoder = json.JSONDecoder()
    buffer = ""
    while True:
        chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
        if not chunk:
            break
        buffer += chunk.decode("utf-8", "replace")
        while True:
            buffer = buffer.lstrip()
            if not buffer:
                break
            try:
                obj, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError:
                break  # incomplete object: wait for more bytes
            buffer = buffer[end:]
            if isinstance(obj, dict):
                yield obj
    if buffer.strip():
        raise IsoboxError(f"Docker daemon sent a truncated JSON stream: {buffer[:200]!r}")
