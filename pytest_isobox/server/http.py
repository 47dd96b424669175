"""HTTP/1.1 from the standard library, as Docker clients speak it: keep-alive, chunked bodies
both ways (build contexts and archives arrive chunked; logs, events and progress leave
chunked), and hijacked connections (attach, exec start) answered `101 UPGRADED` when the
client asked to upgrade, after which the socket carries the raw streams both ways.

One thread per connection, so a follow, a wait or an attach never blocks another client."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pytest_isobox.server.errors import ApiError

JSON_BODY_LIMIT = 16 * 1024 * 1024  # a create or exec body; archives and builds stream
DATA_BODY_LIMIT = 8 * 1024 * 1024 * 1024
_TRUE = {"1", "true", "True", "yes"}


class ClientGone(Exception):
    """The client closed its connection while we were answering."""


class Request:
    """One request: its method, path, query and body, and the ways to answer it."""

    def __init__(self, handler: Handler, peer_pid: int | None) -> None:
        self._handler = handler
        self.method = handler.command
        split = urlsplit(handler.path)
        self.path = split.path
        self.query = parse_qs(split.query, keep_blank_values=True)
        self.headers = handler.headers
        self.peer_pid = peer_pid
        self.api_version = ""
        self.answered = False
        self.body_read = not (handler.headers.get("Content-Length", "0") not in ("", "0")
                              or "chunked" in handler.headers.get("Transfer-Encoding", ""))
        self._body: bytes | None = None

    @property
    def connection(self) -> socket.socket:
        return self._handler.connection

    # the query
    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return list(self.query.get(name, []))

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.arg(name)
        return default if value is None or value == "" else value in _TRUE

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise ApiError(400, f"invalid value for {name}: {value!r} is not an integer") from None

    def json_arg(self, name: str, default: Any = None) -> Any:
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"invalid JSON in query parameter {name}: {exc}") from None

    # the body
    def body(self, limit: int = JSON_BODY_LIMIT) -> bytes:
        """The whole body (Content-Length or chunked); 413 beyond `limit` bytes."""
        if self._body is None:
            self._body = b"".join(self.body_chunks(limit))
        return self._body

    def body_chunks(self, limit: int = DATA_BODY_LIMIT):
        """The body as it arrives, for archives and build contexts."""
        rfile = self._handler.rfile
        self.body_read = True
        total = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip() or b"x", 16)
                except ValueError:
                    raise ApiError(400, f"malformed chunk size {line[:40]!r}") from None
                if size == 0:
                    while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                total += size
                if total > limit:
                    self._handler.close_connection = True
                    raise ApiError(413, f"request body larger than {limit} bytes")
                data = rfile.read(size)
                rfile.readline(8)
                if len(data) < size:
                    raise ClientGone()
                yield data
        length_text = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_text)
        except ValueError:
            raise ApiError(400, f"invalid Content-Length {length_text!r}") from None
        if length > limit:
            self._handler.close_connection = True
            raise ApiError(413, f"request body of {length} bytes is larger than {limit} bytes")
        while length > 0:
            data = rfile.read(min(length, 1 << 20))
            if not data:
                raise ClientGone()
            length -= len(data)
            yield data

    def json(self, *, required: bool = True) -> Any:
        """The body as JSON; 400 naming the line and column at fault."""
        raw = self.body()
        if not raw.strip():
            if required:
                raise ApiError(400, "the request body is empty: expected a JSON document")
            return {}
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"invalid JSON in the request body: {exc}") from None

    # answers
    def _start(self, status: int, headers: dict[str, str]) -> None:
        if self.answered:
            raise RuntimeError("answered twice")
        self.answered = True
        h = self._handler
        h.send_response(status)
        for key, value in {**self._handler.server.default_headers, **headers}.items():
            h.send_header(key, value)
        h.end_headers()

    def reply_json(self, status: int, document: Any, headers: dict[str, str] | None = None
                   ) -> None:
        self.reply_bytes(status, json.dumps(document).encode() + b"\n",
                         {"Content-Type": "application/json", **(headers or {})})

    def reply_bytes(self, status: int, data: bytes, headers: dict[str, str] | None = None,
                    *, head: bool = False) -> None:
        self._start(status, {"Content-Length": str(len(data)), **(headers or {})})
        if self.method != "HEAD" and not head:
            self._write(data)

    def reply_empty(self, status: int = 204, headers: dict[str, str] | None = None) -> None:
        self._start(status, {**({} if status in (204, 304) else {"Content-Length": "0"}),
                             **(headers or {})})

    def stream(self, status: int = 200, content_type: str = "application/json",
               headers: dict[str, str] | None = None) -> ChunkedWriter:
        """Headers now (a client may wait on them, as `docker run` does on /wait), body
        in chunks as it comes."""
        self._start(status, {"Content-Type": content_type, "Transfer-Encoding": "chunked",
                             **(headers or {})})
        self._handler.wfile.flush()
        return ChunkedWriter(self)

    def hijack(self, content_type: str = "application/vnd.docker.raw-stream") -> Hijacked:
        """The connection as a raw stream both ways. Upgrade asked: `101 UPGRADED`; not
        asked: 200 and the stream until we close, as dockerd does."""
        upgrade = "upgrade" in self.headers.get("Connection", "").lower()
        self._handler.close_connection = True
        if upgrade:
            self._start(101, {"Content-Type": content_type, "Connection": "Upgrade",
                              "Upgrade": self.headers.get("Upgrade", "tcp")})
        else:
            self._start(200, {"Content-Type": content_type})
        self._handler.wfile.flush()
        return Hijacked(self._handler)

    def _write(self, data: bytes) -> None:
        try:
            self._handler.wfile.write(data)
            self._handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as exc:
            raise ClientGone() from exc


class ChunkedWriter:
    """A streamed body; `close` ends it and leaves the connection for the next request."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self._lock = threading.Lock()
        self.closed = False

    def write(self, data: bytes) -> None:
        if data:
            with self._lock:
                self._request._write(b"%x\r\n%s\r\n" % (len(data), data))

    def write_json(self, document: Any) -> None:
        self.write(json.dumps(document).encode() + b"\r\n")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(ClientGone):
                self._request._write(b"0\r\n\r\n")


class Hijacked:
    """A hijacked connection: `read` what the client sends (its stdin), `write` to it,
    `close_write` once our side is done (the client sees EOF)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self.socket: socket.socket = handler.connection

    def read(self, size: int = 65536) -> bytes:
        try:
            return self._handler.rfile.read1(size)
        except (ConnectionResetError, ssl.SSLError, OSError):
            return b""

    def write(self, data: bytes) -> None:
        with self._lock:
            try:
                self._handler.wfile.write(data)
                self._handler.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as exc:
                raise ClientGone() from exc

    def close_write(self) -> None:
        with contextlib.suppress(OSError):
            if isinstance(self.socket, ssl.SSLSocket):
                self.socket.unwrap()
            else:
                self.socket.shutdown(socket.SHUT_WR)


def frame(stream: int, data: bytes) -> bytes:
    """Docker's multiplexed frame: stream (0 stdin, 1 stdout, 2 stderr), 3 zero bytes, size."""
    return struct.pack(">BxxxI", stream, len(data)) + data


class Handler(BaseHTTPRequestHandler):
    """Parses requests (the standard library's) and hands each to the server's app."""

    protocol_version = "HTTP/1.1"
    server: ConnectionServer

    def handle_one_request(self) -> None:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError, ssl.SSLError):
            super().handle_one_request()

    def _dispatch(self) -> None:
        request = Request(self, self.server.peer_pid)
        try:
            self.server.app(request)
        except ClientGone:
            self.close_connection = True
        if not request.answered or not request.body_read:  # never misread the next request
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log is not None:
            self.server.log(format % args)


class ConnectionServer:
    """What a Handler sees of the server for one connection."""

    def __init__(self, app: Callable[[Request], None], default_headers: dict[str, str],
                 peer_pid: int | None, log: Callable[[str], None] | None) -> None:
        self.app = app
        self.default_headers = default_headers
        self.peer_pid = peer_pid
        self.log = log


def peer_pid(conn: socket.socket) -> int | None:
    """The client's pid, from the kernel, on a unix socket (SO_PEERCRED); None on tcp."""
    if conn.family != socket.AF_UNIX:
        return None
    with contextlib.suppress(OSError):
        pid, _uid, _gid = struct.unpack("3i", conn.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        return pid or None
    return None


def serve_connection(conn: socket.socket, address: Any, app: Callable[[Request], None],
                     default_headers: dict[str, str], tls: ssl.SSLContext | None,
                     log: Callable[[str], None] | None = None) -> None:
    """Answer requests on one accepted connection until the client closes it."""
    pid = peer_pid(conn)
    try:
        if tls is not None:
            conn = tls.wrap_socket(conn, server_side=True)
        Handler(conn, address or ("", 0), ConnectionServer(app, default_headers, pid, log))
    except (ssl.SSLError, OSError) as exc:
        if log is not None:
            log(f"connection from {address}: {exc}")
    finally:
        with contextlib.suppress(OSError):
            conn.close()
