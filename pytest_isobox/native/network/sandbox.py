"""A process in a fresh network namespace that stands in for a container's first process.

For tests and benchmarks of networking without the runtime: like a container waiting before
exec, the child unshares its network namespace, says so, and waits until its network is
attached; then it runs `target(channel)`, a function that reports back over a socket pair.
The child is ended by pid (SIGKILL) and reaped; its namespace dies with it.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from typing import Self

from pytest_isobox.native import linux
from pytest_isobox.native.forked import fork_child

Target = Callable[[socket.socket], None]


class NetnsProcess:
    """A forked child alone in a new network namespace (and, on request, mount namespace)."""

    def __init__(self, target: Target, *, private_mounts: bool = False) -> None:
        parent, child = socket.socketpair()

        def alone() -> None:
            parent.close()
            linux.unshare(linux.CLONE_NEWNET | (linux.CLONE_NEWNS if private_mounts else 0))
            if private_mounts:
                linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            child.sendall(b"R")
            if child.recv(1) == b"G":
                target(child)

        pid = fork_child(alone, name="netns")
        child.close()
        self.pid = pid
        self.channel = parent
        if parent.recv(1) != b"R":
            self.stop()
            raise OSError("the network namespace holder failed to start")

    def start(self) -> None:
        """The network is attached: let the child run its target."""
        self.channel.sendall(b"G")

    def recv_line(self, timeout: float = 10.0) -> str:
        """The next line the target sent (blocks until it comes, at most `timeout` seconds)."""
        self.channel.settimeout(timeout)
        data = b""
        while not data.endswith(b"\n"):
            chunk = self.channel.recv(1)
            if not chunk:
                raise EOFError(f"netns child {self.pid} closed its channel after {data!r}")
            data += chunk
        return data.decode().rstrip("\n")

    def stop(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.pid = 0
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def send_line(channel: socket.socket, text: str) -> None:
    channel.sendall(text.encode() + b"\n")


def tcp_echo(port: int) -> Target:
    """A target serving TCP echo on 0.0.0.0:port, one connection after another."""
    def serve(channel: socket.socket) -> None:
        server = socket.create_server(("0.0.0.0", port))
        send_line(channel, "listening")
        while True:
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)
    return serve


def udp_echo(port: int) -> Target:
    """A target answering each UDP datagram on 0.0.0.0:port with the same bytes."""
    def serve(channel: socket.socket) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("0.0.0.0", port))
        send_line(channel, "listening")
        while True:
            data, peer = server.recvfrom(65536)
            server.sendto(data, peer)
    return serve
