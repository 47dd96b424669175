"""The user namespace rootless containers live in, shared by every process of one home.

`UserNamespace` joins the home's holder process (`holder`, started if none runs), which owns
the user namespace (with the user's id maps) and the helper network namespace where the
bridges of rootless networks live. Joining is cheap (setns, no exec): every container's
monitor, every exec and every file operation on container or layer trees (`run`) enters the
same namespaces as root, whichever engine process made them, so ids inside mean the same
everywhere and containers of different processes meet on one network.

Each `UserNamespace` keeps a connection to the holder open while it lives, and a monitor
keeps its own (`enter(pin=True)`): the holder exits when the last one closes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

from pytest_isobox.engine import EngineUnavailable
from pytest_isobox.native import linux
from pytest_isobox.native.forked import call_in_child
from pytest_isobox.native.rootless import holder
from pytest_isobox.native.rootless.idmap import IdMapping

T = TypeVar("T")


class UserNamespace:
    """The home's user namespace with `mapping` and its helper network namespace.

    `runtime_dir` is where the holder is found (the home's runtime directory, the user's
    own); `host_loopback` lets containers reach the host's 127.0.0.1 as 10.0.2.2 (see
    `outbound`). `outbound` is empty when containers can reach out, else why they cannot."""

    def __init__(self, mapping: IdMapping, runtime_dir: Path, host_loopback: bool = False,
                 ) -> None:
        self.mapping = mapping
        self.runtime_dir = Path(runtime_dir)
        info, self._conn = holder.join(self.runtime_dir, mapping, host_loopback)
        self.pid = info.pid
        self.outbound = info.outbound
        self._maker = os.getpid()
        self.user_fd = self.net_fd = -1
        try:
            self._open_namespaces()
            if not info.alive():
                raise EngineUnavailable(f"the namespace holder {info.pid} of "
                                        f"{self.runtime_dir} ended while joining it")
        except BaseException:
            self.close()
            raise

    def _open_namespaces(self) -> None:
        self.user_fd = os.open(f"/proc/{self.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        self.net_fd = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def enter(self, pin: bool = False) -> None:
        """Make the calling (single-threaded, forked) process root in the namespace.

        A forked process may have closed the descriptors it inherited (a monitor closes all
        it does not need), so it opens its own, by the holder's pid: the holder cannot end
        while the process that forked us keeps its connection. With `pin`, this process
        keeps a connection of its own (a monitor, which outlives its engine)."""
        if os.getpid() != self._maker:
            self._maker = os.getpid()
            if self._conn is not None:  # its fd number may be closed and reused by now
                self._conn.detach()
            self._conn = holder.connect(self.runtime_dir) if pin else None
            if pin and self._conn is None:
                raise EngineUnavailable(f"the namespace holder of {self.runtime_dir} is gone")
            self._open_namespaces()
        linux.setns(self.user_fd, linux.CLONE_NEWUSER)

    def pin(self) -> socket.socket:
        """A new connection to the holder, for a process that uses the namespace beyond this
        one's life (a container's shim holds it as a monitor holds its own, see `enter`)."""
        conn = holder.connect(self.runtime_dir)
        if conn is None:
            raise EngineUnavailable(f"the namespace holder of {self.runtime_dir} is gone")
        return conn

    def enter_helper_net(self) -> None:
        """Move the calling thread into the helper network namespace (after `enter`)."""
        linux.setns(self.net_fd, linux.CLONE_NEWNET)

    def fds(self) -> set[int]:
        """The descriptors a forked helper must keep to use the namespaces."""
        return {self.user_fd, self.net_fd}

    def run(self, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` in a forked child that entered the namespace as root; its result
        (or its exception) comes back pickled. For file work on trees owned by mapped ids."""
        return call_in_child(func, *args, prepare=self.enter)

    def close(self) -> None:
        """Let go of the namespaces: the holder ends once no process of the home uses them."""
        if os.getpid() != self._maker:  # a forked child: what it inherited is the parent's
            return
        for fd in (self.user_fd, self.net_fd):
            if fd >= 0:
                os.close(fd)
        self.user_fd = self.net_fd = -1
        conn: socket.socket | None = self._conn
        self._conn = None
        if conn is not None:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
