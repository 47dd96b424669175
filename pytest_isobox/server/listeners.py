"""The sockets `-H` names, as dockerd opens them: `unix://PATH`, `tcp://HOST:PORT` and
`fd://` (systemd socket activation, LISTEN_FDS). tcp off loopback is refused unless TLS with
client certificates is on: an open Docker API is root on the host for whoever reaches it."""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import socket
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pytest_isobox.engine import InvalidSpec

DEFAULT_HOST = "unix:///run/isobox/docker.sock"
SOCKET_GROUP = "isobox"
SD_LISTEN_FDS_START = 3


@dataclass
class TlsOptions:
    verify: bool = False
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cert and self.key)


@dataclass
class Listener:
    """An open listening socket and what it was opened from; `cleanup` paths go at close."""

    address: str
    sock: socket.socket
    tls: ssl.SSLContext | None = None
    cleanup: list[Path] = field(default_factory=list)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        for path in self.cleanup:
            with contextlib.suppress(OSError):
                path.unlink()


def tls_context(options: TlsOptions) -> ssl.SSLContext:
    """The server's TLS context; with `verify`, client certificates signed by the CA are
    required, as `dockerd --tlsverify`."""
    if not options.enabled:
        raise InvalidSpec("TLS needs both --tlscert and --tlskey")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(options.cert, options.key)
        if options.verify:
            if not options.cacert:
                raise InvalidSpec("--tlsverify needs --tlscacert (the CA of the client certs)")
            context.load_verify_locations(options.cacert)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise InvalidSpec(f"cannot load the TLS files: {exc}") from None
    return context


def split_tcp(address: str) -> tuple[str, int]:
    rest = address[len("tcp://"):].rstrip("/")
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]:")
    else:
        host, _, port = rest.rpartition(":")
        if not _:
            host, port = rest, ""
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidSpec(f"invalid -H {address!r}: expected tcp://HOST:PORT")
    return host or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tcp_allowed(address: str, options: TlsOptions) -> None:
    """A tcp address off loopback needs --tlsverify with its CA, cert and key."""
    host, _ = split_tcp(address)
    if is_loopback(host):
        return
    if not (options.verify and options.cacert and options.enabled):
        raise InvalidSpec(
            f"refusing -H {address}: tcp on a non-loopback address needs --tlsverify "
            "--tlscacert --tlscert --tlskey (client certificates); without them anyone who "
            "reaches it is root on this host")


def open_listeners(addresses: list[str], options: TlsOptions,
                   environ: dict[str, str] | None = None) -> list[Listener]:
    """Every -H opened (all or none: a failure closes those already open)."""
    environ = os.environ if environ is None else environ
    context = tls_context(options) if options.enabled else None
    opened: list[Listener] = []
    try:
        for address in addresses or [DEFAULT_HOST]:
            if address.startswith("unix://"):
                opened.append(_unix(address))
            elif address.startswith("tcp://"):
                check_tcp_allowed(address, options)
                opened.append(_tcp(address, context))
            elif address.startswith("fd://"):
                opened.extend(_activated(address, environ, context))
            else:
                raise InvalidSpec(f"invalid -H {address!r}: expected unix://PATH, "
                                  "tcp://HOST:PORT or fd://")
    except BaseException:
        for listener in opened:
            listener.close()
        raise
    return opened


def _unix(address: str) -> Listener:
    path = Path(address[len("unix://"):])
    if not path.is_absolute():
        raise InvalidSpec(f"invalid -H {address!r}: the socket path must be absolute")
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise InvalidSpec(f"-H {address}: {path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket of a server that died
        else:
            raise InvalidSpec(f"-H {address}: another server already answers on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o660)
    with contextlib.suppress(KeyError, PermissionError):
        os.chown(path, -1, grp.getgrnam(SOCKET_GROUP).gr_gid)
    sock.listen(128)
    return Listener(address, sock, cleanup=[path])


def _tcp(address: str, context: ssl.SSLContext | None) -> Listener:
    host, port = split_tcp(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidSpec(f"-H {address}: cannot listen: {exc.strerror}") from None
    sock.listen(128)
    bound = sock.getsockname()
    return Listener(f"tcp://{host}:{bound[1]}", sock, context)


def _activated(address: str, environ: dict[str, str], context: ssl.SSLContext | None
               ) -> list[Listener]:
    """systemd's sockets: LISTEN_PID must be us, LISTEN_FDS how many from fd 3;
    `fd://N` takes only fd N."""
    if environ.get("LISTEN_PID") != str(os.getpid()):
        raise InvalidSpec(f"-H {address}: no sockets were passed to this process "
                          "(LISTEN_PID is not our pid; start through systemd socket activation)")
    try:
        count = int(environ.get("LISTEN_FDS", ""))
    except ValueError:
        raise InvalidSpec(f"-H {address}: LISTEN_FDS is not a number") from None
    fds = list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))
    wanted = address[len("fd://"):]
    if wanted:
        if not wanted.isdigit() or int(wanted) not in fds:
            raise InvalidSpec(f"-H {address}: fd {wanted} is not one of the passed sockets {fds}")
        fds = [int(wanted)]
    if not fds:
        raise InvalidSpec(f"-H {address}: LISTEN_FDS passed no socket")
    listeners = []
    for fd in fds:
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        tls = context if sock.family != socket.AF_UNIX else None
        listeners.append(Listener(f"fd://{fd}", sock, tls))
    return listeners
