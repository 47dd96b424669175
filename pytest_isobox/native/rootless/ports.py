"""Published ports of rootless containers: host sockets relayed into the container's netns.

Without root there is no DNAT into a namespace the user made, so, like Docker's userland
proxy, a relay process carries the bytes. The host sockets are bound first, in the caller
(the host's network namespace, 127.0.0.1 unless asked otherwise, a free port for 0) with the
rootful engine's `reserve`, so a taken port fails the start with its clear error. Then the
relay is forked: it enters the user namespace and the container's network namespace, where
every socket it makes from then on lives, and connects each accepted client to the published
port on the container's loopback. A client whose connection the container refuses is closed
at once (the plugin's readiness probe knows that sign). UDP datagrams are relayed per client.

The relay dies with the process that forked it (PR_SET_PDEATHSIG) and is stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
from dataclasses import dataclass, field

from pytest_isobox.engine import PortSpec
from pytest_isobox.native import linux
from pytest_isobox.native.forked import fork_child
from pytest_isobox.native.network.ports import Reservation, reserve

BUFFER = 65536


@dataclass
class PortRelay:
    """A running relay: its pid and, per `8080/tcp`, the host (address, port) pairs."""

    pid: int
    published: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def stop(self) -> None:
        if self.pid:
            stop_relay(self.pid)
            self.pid = 0


Listener = tuple[socket.socket, PortSpec]


def bind_ports(ports: list[PortSpec], reservation: Reservation,
               ) -> tuple[dict[str, list[tuple[str, int]]], list[Listener]]:
    """Bind every published port on the host (in `reservation`): the (address, port) pairs
    per `8080/tcp`, and each socket with its port for `start_relay`."""
    published: dict[str, list[tuple[str, int]]] = {}
    listeners: list[Listener] = []
    for port in ports:
        host_port = reserve(port, reservation)
        published.setdefault(port.key, []).append((port.host_ip or "0.0.0.0", host_port))
        listeners.append((reservation.sockets[-1], port))
    return published, listeners


def start_relay(netns_pid: int, listeners: list[Listener], user_fd: int | None = None,
                ) -> int:
    """Fork a relay of the bound `listeners` into the netns of `netns_pid`; its pid.

    `user_fd` is the user namespace owning that netns, when the caller is not in it already.
    The caller may close its copies of the listening sockets afterwards.
    """
    netns = os.open(f"/proc/{netns_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)

    def relay() -> int:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if user_fd is not None:
            linux.setns(user_fd, linux.CLONE_NEWUSER)
        linux.setns(netns, linux.CLONE_NEWNET)
        linux.interface_up("lo")  # the published port is reached on the loopback
        os.write(ready_w, b"r")
        os.close(ready_w)
        _Relay(listeners).run()
        return 1  # the relay serves until it is killed

    pid = fork_child(relay, name="relay", keep_fds={ready_w, netns, *(() if user_fd is None else (user_fd,)),
                                      *(sock.fileno() for sock, _ in listeners)})
    os.close(ready_w)
    os.close(netns)
    ok = os.read(ready_r, 1) == b"r"
    os.close(ready_r)
    if not ok:
        stop_relay(pid)
        raise OSError(f"the port relay could not enter the network namespace of pid {netns_pid}")
    return pid


def stop_relay(pid: int) -> None:
    """Kill a relay by its pid and reap it; its host ports are free afterwards."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def publish(netns_pid: int, ports: list[PortSpec], user_fd: int | None = None) -> PortRelay:
    """Bind `ports` on the host and relay them into the netns of `netns_pid`."""
    reservation = Reservation()
    try:
        published, listeners = bind_ports(ports, reservation)
        pid = start_relay(netns_pid, listeners, user_fd)
    finally:
        reservation.release()  # the relay holds its own copies
    return PortRelay(pid, published)


class _Relay:
    """The relay's event loop (single-threaded, non-blocking sockets)."""

    def __init__(self, listeners: list[tuple[socket.socket, PortSpec]]) -> None:
        self.sel = selectors.DefaultSelector()
        self.peer: dict[socket.socket, socket.socket] = {}
        self.pending: dict[socket.socket, bytes] = {}
        self.udp_clients: dict[tuple[socket.socket, tuple], socket.socket] = {}
        for sock, port in listeners:
            sock.setblocking(False)
            kind = "accept" if port.protocol == "tcp" else "udp-host"
            self.sel.register(sock, selectors.EVENT_READ, (kind, port))

    def run(self) -> None:
        while True:
            for key, _ in self.sel.select():
                kind, data = key.data
                sock = key.fileobj
                if kind == "accept":
                    self._accept(sock, data)
                elif kind == "tcp":
                    self._pump(sock)
                elif kind == "udp-host":
                    self._udp_out(sock, data)
                elif kind == "udp-inner":
                    self._udp_back(sock, data)

    def _accept(self, listener: socket.socket, port: PortSpec) -> None:
        try:
            client, _ = listener.accept()
        except BlockingIOError:
            return
        inner = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # in the container's netns
        try:
            inner.connect(("127.0.0.1", port.container_port))
        except OSError:
            inner.close()
            client.close()  # refused: closed at once, as a relay with nothing behind it
            return
        for sock in (client, inner):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sel.register(sock, selectors.EVENT_READ, ("tcp", None))
        self.peer[client], self.peer[inner] = inner, client

    def _pump(self, sock: socket.socket) -> None:
        other = self.peer.get(sock)
        try:
            data = sock.recv(BUFFER)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if other is None:
            return
        if not data:
            self.sel.unregister(sock)
            with contextlib.suppress(OSError):
                other.shutdown(socket.SHUT_WR)
            if other not in self.sel.get_map():  # both directions are done
                self._close_pair(sock, other)
            return
        try:
            other.setblocking(True)  # back-pressure: the slower side sets the pace
            other.sendall(data)
            other.setblocking(False)
        except OSError:
            self._close_pair(sock, other)

    def _close_pair(self, a: socket.socket, b: socket.socket) -> None:
        for sock in (a, b):
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(sock)
            self.peer.pop(sock, None)
            sock.close()

    def _udp_out(self, host_sock: socket.socket, port: PortSpec) -> None:
        try:
            data, client = host_sock.recvfrom(BUFFER)
        except BlockingIOError:
            return
        inner = self.udp_clients.get((host_sock, client))
        if inner is None:
            inner = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # in the container's netns
            inner.connect(("127.0.0.1", port.container_port))
            inner.setblocking(False)
            self.udp_clients[(host_sock, client)] = inner
            self.sel.register(inner, selectors.EVENT_READ, ("udp-inner", (host_sock, client)))
        with contextlib.suppress(OSError):
            inner.send(data)

    def _udp_back(self, inner: socket.socket, route: tuple[socket.socket, tuple]) -> None:
        host_sock, client = route
        try:
            data = inner.recv(BUFFER)
        except OSError:  # e.g. ECONNREFUSED from an earlier datagram: nothing to answer
            return
        with contextlib.suppress(OSError):
            host_sock.sendto(data, client)
