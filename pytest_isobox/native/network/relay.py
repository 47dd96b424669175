"""Published ports by relaying in user space, into the container's network namespace.

The alternative to DNAT where iptables in the host's namespace is not ours to change
(rootless), or not wanted. A `PortRelay` is run by the process that lives exactly as long as
the container (the runtime's monitor): its thread enters the container's network namespace, so
every upstream socket it opens is made there and connects to the service on the container's
own loopback; the listening sockets stay in the host's namespace, where they were bound.
Stopping it closes every relayed connection; the listening sockets belong to the caller.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
from collections import OrderedDict

from pytest_isobox.engine import PortSpec
from pytest_isobox.native.network.rtnl import in_netns_of

CHUNK = 1 << 18
MAX_UDP_FLOWS = 1024


class PortRelay:
    """Forward connections and datagrams from host sockets to ports inside pid's netns."""

    def __init__(self, netns_pid: int, forwards: list[tuple[socket.socket, PortSpec]]) -> None:
        self.netns_pid = netns_pid
        self.forwards = forwards
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._flows: OrderedDict[tuple[int, tuple[str, int]], socket.socket] = OrderedDict()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"isobox-port-relay-{netns_pid}")

    def start(self) -> None:
        """Enter the namespace and start relaying; raises what stopped it from starting."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def stop(self) -> None:
        """Stop relaying and close every relayed connection and flow. Idempotent."""
        if self._wake_w < 0:
            return
        os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join()
        os.close(self._wake_w)
        os.close(self._wake_r)
        self._wake_w = self._wake_r = -1
        with self._lock:
            for sock in self._connections:
                _shutdown(sock)
            self._connections.clear()

    # -- the relay thread

    def _run(self) -> None:
        try:
            with in_netns_of(self.netns_pid):  # this thread's sockets are made in there
                self._relay()
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            self._error = exc
            self._ready.set()

    def _relay(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        for sock, port in self.forwards:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, ("listen", port, sock))
        self._ready.set()
        try:
            while True:
                for key, _ in selector.select():
                    if key.data is None:
                        return
                    kind, info, sock = key.data
                    if kind == "listen" and info.protocol == "tcp":
                        self._accept(sock, info)
                    elif kind == "listen":
                        self._datagram_in(selector, sock, info)
                    else:
                        self._datagram_back(key.fileobj, info, sock)
        finally:
            for flow in self._flows.values():
                flow.close()
            self._flows.clear()
            selector.close()

    def _accept(self, listener: socket.socket, port: PortSpec) -> None:
        try:
            client, _ = listener.accept()
        except BlockingIOError:
            return
        client.setblocking(True)
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # made in the netns
        with self._lock:
            self._connections.update((client, upstream))
        threading.Thread(target=self._connect_and_pipe, args=(client, upstream, port),
                         daemon=True).start()

    def _connect_and_pipe(self, client: socket.socket, upstream: socket.socket,
                          port: PortSpec) -> None:
        try:
            upstream.connect(("127.0.0.1", port.container_port))
        except OSError:
            self._close_pair(client, upstream)
            return
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        self._close_pair(client, upstream)

    def _close_pair(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._connections.discard(sock)
                sock.close()

    def _datagram_in(self, selector: selectors.BaseSelector, listener: socket.socket,
                     port: PortSpec) -> None:
        try:
            data, client = listener.recvfrom(65536)
        except BlockingIOError:
            return
        key = (listener.fileno(), client)
        flow = self._flows.get(key)
        if flow is None:
            flow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # made in the netns
            flow.setblocking(False)
            flow.connect(("127.0.0.1", port.container_port))
            selector.register(flow, selectors.EVENT_READ, ("flow", client, listener))
            self._flows[key] = flow
            if len(self._flows) > MAX_UDP_FLOWS:
                _, oldest = self._flows.popitem(last=False)
                selector.unregister(oldest)
                oldest.close()
        self._flows.move_to_end(key)
        try:
            flow.send(data)
        except OSError:  # nothing listens (ICMP refused): the datagram is lost, as it would be
            pass

    @staticmethod
    def _datagram_back(flow: socket.socket, client: tuple[str, int],
                       listener: socket.socket) -> None:
        try:
            data = flow.recv(65536)
        except OSError:
            return
        listener.sendto(data, client)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy one direction until its end, then pass the end on."""
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    _shutdown(dst, socket.SHUT_WR)


def _shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass
