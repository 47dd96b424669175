"""Host ports for published container ports: chosen by the kernel and held while published.

A port is reserved by a socket bound to it (TCP: also listening, so even SO_REUSEADDR servers
cannot take it). DNAT rewrites connections before they reach that socket, so it never accepts
anything; it only keeps the port ours until the container's rules are gone. Closing the
socket (or the death of the process holding it) gives the port back.
"""

from __future__ import annotations

import errno
import socket

from pytest_isobox.engine import ConflictError, InvalidSpec, PortSpec
from pytest_isobox.engine.records import Record, factory, record


@record
class Reservation(Record):
    """The sockets holding one container's host ports."""

    sockets: list[socket.socket] = factory(list)

    def release(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


def reserve(port: PortSpec, reservation: Reservation) -> int:
    """Bind port.host_ip:port.host_port (0 = any free one), keep the socket; the port number."""
    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    host_ip = port.host_ip or "0.0.0.0"
    try:
        sock = socket.socket(socket.AF_INET, kind)
    except OSError as exc:
        raise ConflictError(f"cannot reserve a {port.protocol} port: {exc}") from None
    try:
        if port.protocol == "tcp":  # relayed connections' TIME_WAIT must not keep the port;
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # LISTEN still does
        sock.bind((host_ip, port.host_port))
        if port.protocol == "tcp":
            sock.listen(128)
    except OSError as exc:
        sock.close()
        where = f"{host_ip}:{port.host_port}/{port.protocol}"
        if exc.errno == errno.EADDRINUSE:
            raise ConflictError(f"cannot publish {port.key}: host port {where} is in use") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InvalidSpec(f"cannot publish {port.key}: {host_ip} is not an address of this host") from None
        raise ConflictError(f"cannot publish {port.key} on {where}: {exc.strerror}") from None
    sock.set_inheritable(False)
    reservation.sockets.append(sock)
    return sock.getsockname()[1]
