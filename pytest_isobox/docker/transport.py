"""Byte pipes to a daemon: unix socket, TCP, TLS over TCP, or `ssh HOST docker system dial-stdio`.

`dial` returns a connected socket or raises EngineUnavailable naming the address and the cause
in one line. The HTTP layer (client.py) does not know which kind it holds, except that a TLS
socket half-closes with a close_notify alert (`close_write`) and an ssh pipe can say why it
ended (`why_closed`).
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import ssl
import subprocess
import tempfile
import threading

from pytest_isobox.docker.address import DaemonAddress
from pytest_isobox.engine import EngineUnavailable

_contexts: dict[DaemonAddress, ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def dial(address: DaemonAddress, timeout: float | None) -> socket.socket:
    """A connected socket to the daemon (TLS handshake done)."""
    try:
        if address.scheme == "unix":
            return _dial_unix(address.path, timeout)
        if address.scheme == "ssh":
            return _SSHSocket.spawn(address)
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
        if address.tls is None:
            return sock
        try:
            return tls_context(address).wrap_socket(sock, server_hostname=address.host)
        except BaseException:
            sock.close()
            raise
    except ssl.SSLCertVerificationError as exc:
        raise EngineUnavailable(f"no Docker daemon at {address.describe()}: the daemon's "
                                f"certificate is not trusted: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise EngineUnavailable(
            f"no Docker daemon at {address.describe()}: TLS handshake failed: "
            f"{exc.reason or exc}") from None
    except OSError as exc:
        raise EngineUnavailable(f"no Docker daemon at {address.describe()}: "
                                f"{exc.strerror or exc}") from None


def _dial_unix(path: str, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def tls_context(address: DaemonAddress) -> ssl.SSLContext:
    """One SSL context per address (loading keys once): verified against the CA unless
    verification is off, with the client certificate when there is one."""
    tls = address.tls
    assert tls is not None
    with _contexts_lock:
        if address in _contexts:
            return _contexts[address]
        try:
            context = ssl.create_default_context(cafile=tls.ca) if tls.verify \
                else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if not tls.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if tls.cert and tls.key:
                context.load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError) as exc:
            raise EngineUnavailable(f"loading the TLS files for {address.describe()} failed: "
                                    f"{exc}") from None
        _contexts[address] = context
        return context


def close_write(sock: socket.socket) -> None:
    """End our direction only: the daemon reads end of file, we still read its output.

    On TLS that is a close_notify alert (Go's CloseWrite); SSLSocket.shutdown would drop
    the TLS layer for reading too, so the alert is sent through a non-blocking unwrap,
    which stops once the alert is out and the peer's has not come.
    """
    if isinstance(sock, ssl.SSLSocket):
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            sock.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except (OSError, ValueError):
            return
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def why_closed(sock: socket.socket | None) -> str:
    """What the far end said when it hung up (ssh's stderr), or ''."""
    return sock.why() if isinstance(sock, _SSHSocket) else ""


class _SSHSocket(socket.socket):
    """Our end of a socket pair whose other end is `ssh ... docker system dial-stdio`."""

    proc: subprocess.Popen | None = None
    stderr: object = None

    @classmethod
    def spawn(cls, address: DaemonAddress) -> _SSHSocket:
        ours, theirs = socket.socketpair()
        sock = cls(fileno=ours.detach())
        sock.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        try:
            sock.proc = subprocess.Popen(ssh_command(address), stdin=theirs, stdout=theirs,
                                         stderr=sock.stderr, start_new_session=True)
        except OSError:
            sock.close()
            raise
        finally:
            theirs.close()
        return sock

    def why(self) -> str:
        """ssh's exit status and last line of stderr, once it ended (closing ends it)."""
        if self.proc is not None:
            self.close()
        return self._why

    _why = ""

    def close(self) -> None:
        super().close()
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:  # end of its stdin ends it; do not leave it behind regardless
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if self.stderr is not None:
            self.stderr.seek(0)  # type: ignore[attr-defined]
            text = self.stderr.read().decode("utf-8", "replace").strip()  # type: ignore[attr-defined]
            self.stderr.close()  # type: ignore[attr-defined]
            self.stderr = None
            if code:
                last = text.splitlines()[-1] if text else "no message"
                self._why = f"ssh exited with status {code}: {last}"


def ssh_command(address: DaemonAddress) -> list[str]:
    """The command Docker's CLI runs for ssh:// (BatchMode: never wait on a password prompt)."""
    from urllib.parse import urlsplit

    parts = urlsplit(address.url)
    argv = ["ssh", "-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30"]
    if parts.username:
        argv += ["-l", parts.username]
    if parts.port:
        argv += ["-p", str(parts.port)]
    remote = ["docker", "system", "dial-stdio"]
    return [*argv, "--", str(parts.hostname), shlex.join(remote)]
