"""The network agent of a rootless container: where its network is wired and its ports kept.

A container's monitor calls unshare(CLONE_NEWPID) before forking the container, and after
that call the kernel lets it neither start threads nor fork anything but the container's
PID 1 (a second child would live in the container's pid namespace). Wiring a rootless
network needs threads (to enter the helper and container network namespaces and come back)
and a relay process for published ports. So the monitor forks this agent first, still in
its own pid namespace; the agent attaches the container when told its pid, answers with its
addresses and ports, and then stays (holding the relay, its child) until the monitor closes
the pipe or dies. Its end ends the relay, which lets the container's network namespace and
veths go.

A container started by isobox-shim has no Python monitor: its agent (`ShimAgent`) is forked
from the engine instead, ahead of the container that will use it (forking a large Python
process and entering the namespace cost milliseconds the start need not wait for), detached
from it, and told on a pipe what to attach and which shim to watch; it lives until that shim
ends (a pidfd on it), which is when the container has ended. An agent never used ends when
its pipe closes: the engine closes it, or the engine has died.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
from collections.abc import Callable
from typing import Any

from pytest_isobox.engine import ContainerError
from pytest_isobox.native.forked import fork_child
from pytest_isobox.polling import readable

Attach = Callable[[int], tuple[dict, dict]]  # container pid -> (ips, ports)


class NetworkAgent:
    """Fork with `start` (before the pid namespace); `attach` from the monitor; `stop`."""

    def __init__(self, attach: Attach) -> None:
        self._attach = attach
        self.pid = 0
        self._to_agent = self._from_agent = -1

    def start(self, keep: set[int]) -> None:
        """Fork the agent; it keeps only its pipes and the fds in `keep` (the namespaces'):
        any other fd of the monitor it held (its container's error pipe) would never close."""
        to_r, to_w = os.pipe2(os.O_CLOEXEC)
        from_r, from_w = os.pipe2(os.O_CLOEXEC)
        pid = fork_child(lambda: self._serve(to_r, from_w), name="agent", keep_fds={to_r, from_w, *keep})
        os.close(to_r)
        os.close(from_w)
        self.pid, self._to_agent, self._from_agent = pid, to_w, from_r

    @staticmethod
    def _read_reply(fd: int) -> bytes:
        """One sized reply (the relay, the agent's child, holds the pipe open too)."""
        with open(fd, "rb", closefd=False) as source:
            size = int.from_bytes(source.read(8) or b"\0", "big")
            return source.read(size) if size else b""

    def _serve(self, requests: int, replies: int, until: int | None = None) -> None:
        """Attach the container whose pid comes on `requests`, answer on `replies`, then stay
        until `requests` closes (the monitor) or `until`, a pidfd, turns readable (a shim)."""
        raw = os.read(requests, 64)
        if not raw:
            return
        try:
            reply = pickle.dumps((True, self._attach(int(raw))))
        except BaseException as exc:  # noqa: BLE001 - the monitor reports it as a failed start
            reply = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
        os.write(replies, len(reply).to_bytes(8, "big") + reply)
        os.close(replies)
        if until is not None:
            readable([until], None)  # until the shim has ended
        else:
            os.read(requests, 1)  # until the monitor closes the pipe (or dies)

    def attach(self, container_pid: int) -> tuple[dict, dict]:
        """Have the agent attach the container; its (ips, ports)."""
        os.write(self._to_agent, str(container_pid).encode())
        return _attached(self._read_reply(self._from_agent))

    def stop(self) -> None:
        """End the agent (by its pid) and its relay; idempotent."""
        for fd in (self._to_agent, self._from_agent):
            if fd >= 0:
                os.close(fd)
        self._to_agent = self._from_agent = -1
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0


def _attached(reply: bytes) -> tuple[dict, dict]:
    """An agent's reply to an attach: its (ips, ports), or why it could not."""
    if not reply:
        raise ContainerError("the network agent died while attaching the container")
    ok, value = pickle.loads(reply)  # from our own agent process
    if not ok:
        raise ContainerError(f"cannot attach the network: {value}")
    return value


def _read_sized(fd: int) -> bytes:
    """One message sent as its size (8 bytes) and its bytes; b"" at end of file."""
    with open(fd, "rb", closefd=False) as source:
        size = int.from_bytes(source.read(8) or b"\0", "big")
        return source.read(size) if size else b""


def _send_sized(fd: int, data: bytes) -> None:
    os.write(fd, len(data).to_bytes(8, "big") + data)


class ShimAgent:
    """The network agent of the next shim-started container, forked ahead (see the module
    docstring): construct it when the caller's process has no other thread running; `attach`
    once; `close` in any case (an agent not used then ends)."""

    def __init__(self, enter: Callable[[], None], attach: Callable[[Any], tuple[dict, dict]],
                 ) -> None:
        to_r, to_w = os.pipe2(os.O_CLOEXEC)
        from_r, from_w = os.pipe2(os.O_CLOEXEC)
        keep = {to_r, from_w}

        def agent() -> None:
            enter()
            self._serve(to_r, from_w, attach)

        # double fork: nobody has to reap it, and it outlives us as a persistent container.
        # The middle is reaped at `close`, long after it exited: not waited for now
        try:
            self._middle = fork_child(lambda: fork_child(agent, name="agent", keep_fds=keep,
                                                         die_with_parent=False) and None,
                                      name="agent", keep_fds=keep, die_with_parent=False)
        except BaseException:
            os.close(to_w)
            os.close(from_r)
            raise
        finally:
            os.close(to_r)
            os.close(from_w)
        self._maker = os.getpid()
        self._to_agent, self._from_agent = to_w, from_r

    @staticmethod
    def _serve(requests: int, replies: int, attach: Callable[[Any], tuple[dict, dict]]) -> None:
        """Wait for (shim pid, request); attach, answer, then stay until the shim has ended.
        End of file instead: the engine let go of this agent unused (or died)."""
        data = _read_sized(requests)
        if not data:
            return
        watch = -1
        try:
            shim_pid, request = pickle.loads(data)
            watch = os.pidfd_open(shim_pid)  # it waits for its go meanwhile: it is alive
            reply = pickle.dumps((True, attach(request)))
        except BaseException as exc:  # noqa: BLE001 - the engine reports it as a failed start
            reply = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
        _send_sized(replies, reply)
        os.close(replies)
        if watch >= 0:
            readable([watch], None)  # until the shim has ended (its relay ends with us)

    def attach(self, request: Any, shim_pid: int) -> tuple[dict, dict]:
        """Have the agent attach `request` (what its `attach` takes) and watch `shim_pid`."""
        _send_sized(self._to_agent, pickle.dumps((shim_pid, request)))
        return _attached(_read_sized(self._from_agent))

    def close(self, wait: float = 0.0) -> None:
        """Let go of the agent (a forked child of ours leaves it alone); one never used then
        ends, which `wait` seconds at most wait for (its reply pipe closes as it exits)."""
        if os.getpid() != self._maker or self._to_agent < 0:
            return
        os.close(self._to_agent)
        if wait:
            with contextlib.suppress(OSError):
                while readable([self._from_agent], wait) and os.read(self._from_agent, 4096):
                    pass
        os.close(self._from_agent)
        self._to_agent = self._from_agent = -1
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._middle, 0)
