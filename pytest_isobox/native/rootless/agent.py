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

A container started by isobox-shim has no Python monitor: its agent is forked from the engine
instead (`attach_for_shim`), detached from it, enters the namespace itself, and lives until
the shim ends (a pidfd on it), which is when the container has ended.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
from collections.abc import Callable

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
        data = self._read_reply(self._from_agent)
        if not data:
            raise ContainerError("the network agent died while attaching the container")
        ok, value = pickle.loads(data)
        if not ok:
            raise ContainerError(f"cannot attach the network: {value}")
        return value

    def attach_for_shim(self, enter: Callable[[], None], container_pid: int, shim_pid: int,
                        ) -> tuple[dict, dict]:
        """Attach the container of the shim `shim_pid` from an agent forked here, which
        `enter`s the user namespace first and ends once the shim has (double fork: nobody
        has to reap it, and it outlives this process as a persistent container does). The
        caller's process must have no other thread running."""
        watch = os.pidfd_open(shim_pid)  # the shim waits for its go meanwhile: it is alive
        to_r, to_w = os.pipe2(os.O_CLOEXEC)
        from_r, from_w = os.pipe2(os.O_CLOEXEC)
        keep = {to_r, from_w, watch}

        def agent() -> None:
            enter()
            self._serve(to_r, from_w, until=watch)

        try:
            middle = fork_child(lambda: fork_child(agent, name="agent", keep_fds=keep,
                                                   die_with_parent=False) and None,
                                name="agent", keep_fds=keep, die_with_parent=False)
            os.waitpid(middle, 0)
        finally:
            for fd in keep:
                os.close(fd)
        self._to_agent, self._from_agent = to_w, from_r
        try:
            return self.attach(container_pid)
        finally:
            self.stop()  # our pipes only: the agent itself ends with the shim

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
