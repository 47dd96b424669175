"""HTTP(S) to registries: TLS like Docker, the auth challenge flow, safe redirects.

One `Transport` serves one registry endpoint (a base URL) with the credentials given for it.
- Scheme: https; plain http only when the settings allow it for the host (loopback or
  insecure) and https fails there.
- Auth: a request answered 401 is retried once with what the `WWW-Authenticate` challenge
  asks: `Basic` (the endpoint's credentials) or `Bearer` (a token from the realm, fetched
  anonymously or with the credentials; tokens are cached per scope). Credentials go only to
  the endpoint's host and to the token realm its challenge names, never over plain http to
  another host.
- Redirects (blob storage) are followed; `Authorization` is dropped when the host changes.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Self

from pytest_isobox.images.registry.credentials import Credentials
from pytest_isobox.images.registry.errors import RegistryError, Unauthorized
from pytest_isobox.images.registry.settings import RegistrySettings, is_loopback, split_host_port

USER_AGENT = "isobox/0.1 (pytest-isobox)"
_TIMEOUT = 60.0
_MAX_REDIRECTS = 8
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """`Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`; None if neither."""
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "basic"):
        return None
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _CHALLENGE_PARAM.finditer(rest)}
    return Challenge(scheme, params)


class Response:
    """A response whose body is read (streamed) by the caller; `close()` ends the connection."""

    def __init__(self, conn: http.client.HTTPConnection, raw: http.client.HTTPResponse,
                 url: str) -> None:
        self._conn = conn
        self.raw = raw
        self.status = raw.status
        self.headers = raw.headers
        self.url = url

    def read(self, size: int = -1) -> bytes:
        return self.raw.read(size) if size >= 0 else self.raw.read()

    def json(self) -> dict:
        data = self.read()
        try:
            return json.loads(data)
        except ValueError:
            raise RegistryError(f"{self.url}: invalid JSON in the response") from None

    def close(self) -> None:
        self.raw.close()
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Transport:
    """Requests to one registry endpoint (`base`: `https://host`, `http://host` or `//host`)."""

    def __init__(self, base: str, credentials: Credentials | None,
                 settings: RegistrySettings, label: str) -> None:
        parsed = urllib.parse.urlsplit(base)
        self.netloc = parsed.netloc
        self.prefix = parsed.path.rstrip("/")
        self._scheme = parsed.scheme or None  # None: https, else http where allowed
        self._credentials = credentials
        self._settings = settings
        self.label = label  # the registry as the user named it, for messages
        self._tokens: dict[str, str] = {}
        self._challenge: Challenge | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connections

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        host, port = split_host_port(netloc)
        if scheme == "https":
            context = self._settings.tls_context(netloc)
            return http.client.HTTPSConnection(host, port, timeout=_TIMEOUT, context=context)
        return http.client.HTTPConnection(host, port, timeout=_TIMEOUT)

    def _send(self, method: str, url: str, headers: dict[str, str],
              body: bytes | object | None) -> Response:
        parts = urllib.parse.urlsplit(url)
        conn = self._connect(parts.scheme, parts.netloc)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(method, target or "/", body=body,  # type: ignore[arg-type]
                         headers={"User-Agent": USER_AGENT, **headers})
            return Response(conn, conn.getresponse(), url)
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise RegistryError(f"registry {parts.netloc}: TLS certificate not trusted "
                                f"({exc.verify_message}); add its CA to "
                                f"{self._settings.certs_d}/{parts.netloc}/ca.crt") from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _Unreachable(parts.netloc, exc, _tls_hint(exc, self._settings, parts.netloc)
                               ) from None

    @property
    def challenged(self) -> Challenge | None:
        """The auth challenge the registry sent, None while it asked for none."""
        return self._challenge

    def base_url(self) -> str:
        """The endpoint's URL with its scheme settled (probing https, then http if allowed)."""
        with self._lock:
            if self._scheme is None:
                self._scheme = self._probe()
        return f"{self._scheme}://{self.netloc}{self.prefix}"

    def _probe(self) -> str:
        """https unless it fails and plain http is allowed for the host; keeps the challenge."""
        try:
            self._ping("https")
            return "https"
        except (_Unreachable, RegistryError) as exc:
            if not self._settings.allows_http(self.netloc):
                raise _as_error(exc, self.label) from None
            https_error = exc
        try:
            self._ping("http")
            return "http"
        except RegistryError:
            raise _as_error(https_error, self.label) from None

    def _ping(self, scheme: str) -> None:
        with self._send("GET", f"{scheme}://{self.netloc}{self.prefix}/v2/", {}, None) as resp:
            resp.read()
            if resp.status == 401:
                self._challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            elif resp.status != 200:
                raise RegistryError(f"registry {self.label}: GET /v2/ answered {resp.status} "
                                    "(not a registry?)")

    # ------------------------------------------------------------------ requests

    def request(self, method: str, path: str, *, scope: str, headers: dict[str, str] | None = None,
                body: bytes | object | None = None, ok: tuple[int, ...] = (200,),
                retry_body: bool = True) -> Response:
        """`method` on `path` (below the endpoint, or an absolute URL the registry gave),
        authorised for `scope`; follows redirects. Returns any status in `ok`, else raises."""
        url = path if "://" in path else self.base_url() + path
        headers = dict(headers or {})
        for attempt in range(2):
            auth = self._authorization(scope)
            resp = self._follow(method, url, headers, body, auth)
            if resp.status == 401 and attempt == 0 and (retry_body or body is None):
                challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                resp.close()
                if challenge is None:
                    break
                with self._lock:
                    self._challenge = challenge
                    self._tokens.pop(scope, None)
                continue
            if resp.status in ok:
                return resp
            return self._fail(resp, method, url)
        raise self._unauthorized()

    def _unauthorized(self, detail: str = "") -> Unauthorized:
        hint = " (credentials refused)" if self._credentials else \
            f" (no credentials: run isobox login {self.label})"
        return Unauthorized(f"registry {self.label}: unauthorized{hint}"
                            + (f": {detail}" if detail else ""))

    def _follow(self, method: str, url: str, headers: dict[str, str], body: object,
                auth: str | None) -> Response:
        origin = urllib.parse.urlsplit(url).netloc
        for _ in range(_MAX_REDIRECTS):
            here = urllib.parse.urlsplit(url).netloc
            sent = dict(headers)
            if auth and here == origin:
                sent["Authorization"] = auth
            resp = self._send(method, url, sent, body)
            if resp.status not in (301, 302, 303, 307, 308) or "Location" not in resp.headers:
                return resp
            location = urllib.parse.urljoin(url, resp.headers["Location"])
            resp.close()
            if urllib.parse.urlsplit(location).scheme not in ("http", "https"):
                raise RegistryError(f"registry {self.label}: redirect to {location!r}")
            url = location
            if resp.status == 303:
                method, body = "GET", None
        raise RegistryError(f"registry {self.label}: too many redirects for {url}")

    def _fail(self, resp: Response, method: str, url: str) -> Response:
        from pytest_isobox.images.registry.errors import NameUnknown

        try:
            text = resp.read(65536).decode(errors="replace")
        finally:
            resp.close()
        codes, message = _error_codes(text)
        what = urllib.parse.urlsplit(url).path
        if resp.status == 404 or {"NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN"} & codes:
            raise NameUnknown(f"registry {self.label}: {message or 'not found'} ({what})")
        if resp.status in (401, 403) or {"UNAUTHORIZED", "DENIED"} & codes:
            raise self._unauthorized(f"{message} ({what})" if message else what)
        raise RegistryError(f"registry {self.label}: {method} {what} answered {resp.status}"
                            + (f": {message}" if message else ""))

    # ------------------------------------------------------------------ auth

    def _authorization(self, scope: str) -> str | None:
        with self._lock:
            challenge = self._challenge
            if challenge is None:
                return None
            if challenge.scheme == "basic":
                return self._basic()
            token = self._tokens.get(scope)
            if token is None:
                token = self._tokens[scope] = self._fetch_token(challenge, scope)
            return f"Bearer {token}"

    def _basic(self) -> str | None:
        if self._credentials is None:
            return None
        pair = f"{self._credentials.username}:{self._credentials.secret}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _fetch_token(self, challenge: Challenge, scope: str) -> str:
        realm = challenge.params.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https"):
            raise RegistryError(f"registry {self.label}: bad token realm {realm!r}")
        query = [("service", challenge.params["service"])] if "service" in challenge.params \
            else []
        query += [("scope", s) for s in scope.split(" ") if s]
        url = realm + ("&" if parts.query else "?") + urllib.parse.urlencode(query)
        headers = {}
        if self._credentials is not None and self._may_send_credentials(parts):
            headers["Authorization"] = self._basic() or ""
        resp = self._send("GET", url, headers, None)
        with resp:
            if resp.status in (401, 403):
                raise Unauthorized(f"registry {self.label}: unauthorized by its token server "
                                   f"{parts.netloc}" + (" (credentials refused)"
                                                        if "Authorization" in headers else ""))
            if resp.status != 200:
                raise RegistryError(f"registry {self.label}: token server {parts.netloc} "
                                    f"answered {resp.status}")
            doc = resp.json()
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {self.label}: token server {parts.netloc} sent no token")
        return token

    def _may_send_credentials(self, realm: urllib.parse.SplitResult) -> bool:
        """The realm the registry named gets its credentials over https (or on its own host,
        or loopback), never over plain http elsewhere."""
        if realm.scheme == "https":
            return True
        host = split_host_port(realm.netloc)[0]
        return realm.netloc == self.netloc or is_loopback(host)


class _Unreachable(RegistryError):
    def __init__(self, netloc: str, cause: BaseException, hint: str = "") -> None:
        super().__init__(f"cannot reach registry {netloc}: {_describe(cause)}"
                         + (f"; {hint}" if hint else ""))


def _tls_hint(exc: BaseException, settings: RegistrySettings, netloc: str) -> str:
    """What to do about a TLS failure whose reason says what the other side wanted."""
    reason = str(getattr(exc, "reason", "") or "") if isinstance(exc, ssl.SSLError) else ""
    if reason == "WRONG_VERSION_NUMBER" and not settings.allows_http(netloc):
        return ("it may speak plain http, which is used only for loopback and hosts in "
                "ISOBOX_INSECURE_REGISTRIES")
    if "ALERT_BAD_CERTIFICATE" in reason or "CERTIFICATE_REQUIRED" in reason:
        return (f"it wants a client certificate: {settings.certs_d}/{netloc}/<name>.cert "
                "and <name>.key")
    return ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"no such host or no network ({exc.strerror})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _as_error(exc: BaseException, label: str) -> RegistryError:
    if isinstance(exc, RegistryError):
        return exc
    return RegistryError(str(exc))


def _error_codes(text: str) -> tuple[set[str], str]:
    try:
        errors = json.loads(text).get("errors") or []
    except (ValueError, AttributeError):
        return set(), ""
    codes = {str(e.get("code", "")) for e in errors if isinstance(e, dict)}
    message = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
    return codes, message
