"""Where the Docker daemon is, found as Docker's CLI finds it.

Order: an explicit address; DOCKER_HOST; the context named by DOCKER_CONTEXT, else the
`currentContext` of `$DOCKER_CONFIG/config.json` (contexts live under
`$DOCKER_CONFIG/contexts/meta/<sha256 of name>/meta.json`, their TLS files under
`contexts/tls/<sha256 of name>/docker/`); else /var/run/docker.sock, or the rootless
daemon's `$XDG_RUNTIME_DIR/docker.sock` when the first is absent. TLS for DOCKER_HOST and
explicit addresses comes from DOCKER_TLS_VERIFY / DOCKER_TLS / DOCKER_CERT_PATH.
Pure logic: nothing here opens a connection (see transport.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pytest_isobox.engine import EngineUnavailable

DEFAULT_SOCKET = "/var/run/docker.sock"
_SCHEMES = ("unix", "tcp", "http", "https", "ssh")


@dataclass(frozen=True)
class TLSFiles:
    """Client TLS material: `verify` checks the daemon's certificate against `ca`."""

    verify: bool
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class DaemonAddress:
    """A resolved daemon address and where it came from (for error messages)."""

    url: str  # unix:///path, tcp://host:port or ssh://[user@]host[:port]
    source: str
    tls: TLSFiles | None = None

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str | None:
        return urlsplit(self.url).hostname if self.scheme != "unix" else None

    @property
    def port(self) -> int | None:
        return urlsplit(self.url).port

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def remote_host(self) -> str | None:
        """The daemon's host when it is not this machine's loopback, else None."""
        host = self.host
        if host is None or host == "localhost":
            return None
        try:
            return None if ipaddress.ip_address(host).is_loopback else host
        except ValueError:
            return host

    def describe(self) -> str:
        """`tcp://10.0.0.2:2376 (TLS, from DOCKER_HOST)`: what an error message names."""
        how = [] if self.tls is None else ["TLS" if self.tls.verify else "TLS, unverified"]
        return f"{self.url} ({', '.join([*how, 'from ' + self.source])})"


def config_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("DOCKER_CONFIG") or Path(env.get("HOME") or Path.home()) / ".docker")


def context_id(name: str) -> str:
    """The directory name Docker's context store gives a context: sha256 of its name."""
    return hashlib.sha256(name.encode()).hexdigest()


def resolve_address(base_url: str | None = None,
                    env: Mapping[str, str] | None = None) -> DaemonAddress:
    """The daemon to talk to; a bad value raises EngineUnavailable naming it and its source."""
    env = os.environ if env is None else env
    if base_url:
        return _from_url(base_url, "the engine option", _env_tls(env))
    if env.get("DOCKER_HOST"):
        return _from_url(env["DOCKER_HOST"], "DOCKER_HOST", _env_tls(env))
    context, source = _context_name(env)
    if context and context != "default":
        return _from_context(context, source, env)
    return _default_socket(env)


def _default_socket(env: Mapping[str, str]) -> DaemonAddress:
    runtime = env.get("XDG_RUNTIME_DIR")
    if not os.path.exists(DEFAULT_SOCKET) and runtime:
        rootless = os.path.join(runtime, "docker.sock")
        if os.path.exists(rootless):
            return DaemonAddress("unix://" + rootless, "the rootless socket in XDG_RUNTIME_DIR")
    return DaemonAddress("unix://" + DEFAULT_SOCKET, "the default socket")


def _from_url(raw: str, source: str, tls: TLSFiles | None) -> DaemonAddress:
    url = raw.strip()
    if url.startswith("/"):
        url = "unix://" + url
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise EngineUnavailable(
            f"Docker daemon address {raw!r} (from {source}): unsupported scheme "
            f"{parts.scheme or '(none)'!r}; use unix://, tcp://, ssh:// or a socket path")
    if parts.scheme == "unix":
        if not parts.path:
            raise EngineUnavailable(f"Docker daemon address {raw!r} (from {source}): no path")
        return DaemonAddress("unix://" + parts.path, source)
    try:
        port = parts.port
    except ValueError:
        raise EngineUnavailable(
            f"Docker daemon address {raw!r} (from {source}): bad port") from None
    if not parts.hostname:
        raise EngineUnavailable(f"Docker daemon address {raw!r} (from {source}): no host")
    if parts.scheme == "ssh":
        return DaemonAddress(url, source)
    if parts.scheme == "https" and tls is None:
        tls = TLSFiles(verify=True)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = port or (2376 if tls is not None else 2375)
    return DaemonAddress(f"tcp://{host}:{port}", source, tls)


def _env_tls(env: Mapping[str, str]) -> TLSFiles | None:
    """TLS as the CLI takes it from the environment (a non-empty value switches it on)."""
    verify = bool(env.get("DOCKER_TLS_VERIFY"))
    if not verify and not env.get("DOCKER_TLS"):
        return None
    where = Path(env.get("DOCKER_CERT_PATH") or config_dir(env))
    return _tls_files(where, verify, "DOCKER_CERT_PATH" if env.get("DOCKER_CERT_PATH")
                      else "the Docker config directory")


def _tls_files(where: Path, verify: bool, source: str) -> TLSFiles:
    ca, cert, key = (where / name for name in ("ca.pem", "cert.pem", "key.pem"))
    if verify and not ca.is_file():
        raise EngineUnavailable(f"TLS verification is on but {ca} (from {source}) is missing")
    if cert.is_file() != key.is_file():
        missing = key if cert.is_file() else cert
        raise EngineUnavailable(f"TLS client certificate incomplete: {missing} "
                                f"(from {source}) is missing")
    return TLSFiles(verify, str(ca) if ca.is_file() else None,
                    str(cert) if cert.is_file() else None, str(key) if key.is_file() else None)


def _context_name(env: Mapping[str, str]) -> tuple[str | None, str]:
    if env.get("DOCKER_CONTEXT"):
        return env["DOCKER_CONTEXT"], "DOCKER_CONTEXT"
    config = config_dir(env) / "config.json"
    try:
        doc = json.loads(config.read_text())
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError) as exc:
        raise EngineUnavailable(f"reading {config} failed: {exc}") from None
    name = doc.get("currentContext") if isinstance(doc, dict) else None
    return (str(name), f"currentContext in {config}") if name else (None, "")


def _from_context(name: str, source: str, env: Mapping[str, str]) -> DaemonAddress:
    store = config_dir(env) / "contexts"
    meta_file = store / "meta" / context_id(name) / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
        endpoint = meta["Endpoints"]["docker"]
        host = str(endpoint["Host"])
    except FileNotFoundError:
        raise EngineUnavailable(
            f"Docker context {name!r} (from {source}) does not exist: no {meta_file}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineUnavailable(
            f"Docker context {name!r}: {meta_file} has no docker endpoint Host "
            f"({type(exc).__name__}: {exc})") from None
    tls_dir = store / "tls" / context_id(name) / "docker"
    skip_verify = bool(endpoint.get("SkipTLSVerify"))
    tls = None
    if (tls_dir.is_dir() and any(tls_dir.iterdir())) or skip_verify:
        tls = _tls_files(tls_dir, not skip_verify, f"context {name!r}")
    return _from_url(host, f"context {name!r} named by {source}", tls)
