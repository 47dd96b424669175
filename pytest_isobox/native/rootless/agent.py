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
ahead of the container that will use it, and told on a socket what to attach as soon as the
start begins (the agent claims the addresses while the engine plans the start and the
container sets up), then the container's pid and its shim's once its namespaces are there
(the agent wires it); it lives until that shim ends (a pidfd on it), which is when the
container has ended.
An agent never used ends when its pipe closes: the engine closes it, or the engine has died.
The engine does not fork these agents itself: an `AgentMaker`, forked from it once and
already in the user namespace, forks each one on request, on its own CPU time (forking the
engine's large Python process costs it milliseconds per container, and as much again in
copy-on-write faults afterwards).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import pickle
import signal
import socket
from collections.abc import Callable, Generator
from typing import Any

from pytest_isobox.engine import ContainerError
from pytest_isobox.native.forked import fork_child
from pytest_isobox.polling import readable

Attach = Callable[[int], tuple[dict, dict]]  # container pid -> (ips, ports)
# a shim container's request -> steps: run to the first yield (the claim), then sent the
# pid, they yield (ips, ports) (the wiring) and finish what can wait after the reply; sent
# None instead (the start failed first), they undo the claim
Prepare = Callable[[Any], Generator[Any, int | None, None]]


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
        return _attached(_read_sized(self._from_agent))  # (the relay holds the pipe too)

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
    """One message sent as its size (8 bytes) and its bytes; b"" at end of file. Read
    unbuffered: a second message may follow in the pipe, for a later call."""
    size = int.from_bytes(_read_exactly(fd, 8) or b"\0", "big")
    return _read_exactly(fd, size) if size else b""


def _read_exactly(fd: int, count: int) -> bytes:
    """`count` bytes of `fd`, fewer at end of file."""
    data = b""
    while len(data) < count:
        chunk = os.read(fd, count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _send_sized(fd: int, data: bytes) -> None:
    os.write(fd, len(data).to_bytes(8, "big") + data)


class AgentMaker:
    """The process that forks the engine's `ShimAgent`s (see the module docstring): forked
    once, when the engine's process has no other thread running; `close` (or the engine's
    death) ends it. The agents it forked live on: each ends with its shim or its pipe.

    Being a process of the engine already in the user namespace, it also runs `release` (a
    container's release, which needs the namespace) when asked, in place of a fork of the
    engine for each one: that fork cost the engine milliseconds, and as much again in
    copy-on-write faults of its next container's start."""

    def __init__(self, enter: Callable[[], None], keep: Callable[[], set[int]],
                 prepare: Prepare, release: Callable[[str, bool], None]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX,
                                         socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)

        def maker() -> None:
            enter()
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # its agents leave no zombie
            # what the engine made is never collected here, so no agent's garbage collection
            # writes to those objects' pages (each a copy-on-write fault of a fresh fork)
            gc.freeze()
            self._serve(theirs, keep, prepare, release)

        try:
            self.pid = fork_child(maker, name="agents", keep_fds={theirs.fileno()},
                                  die_with_parent=False)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        self._owner = os.getpid()

    @staticmethod
    def _serve(sock: socket.socket, keep: Callable[[], set[int]], prepare: Prepare,
               release: Callable[[str, bool], None]) -> None:
        """For each request (an agent's two pipe ends), fork the agent and answer its pid
        (or why not); for each release, run it and answer on the pipe that came with it;
        until the engine's end closes."""
        while True:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 2)
            if not message:
                return
            if message.startswith(b"r"):
                AgentMaker._release(release, message[1:], fds[0])
                continue
            requests, replies = fds
            try:
                pid = fork_child(functools.partial(AgentMaker._agent, requests, replies, prepare),
                                 name="agent", keep_fds={requests, replies, *keep()},
                                 die_with_parent=False)
                answer = str(pid).encode()
            except OSError as exc:
                answer = f"!{exc}".encode()
            finally:
                os.close(requests)
                os.close(replies)
            sock.send(answer)

    @staticmethod
    def _release(release: Callable[[str, bool], None], request: bytes, answer: int) -> None:
        from pytest_isobox.native.forked import _picklable

        try:
            path, delete = pickle.loads(request)
            reply = pickle.dumps((True, release(path, delete)))
        except Exception as exc:  # noqa: BLE001 - raised again in the engine
            reply = pickle.dumps((False, _picklable(exc)))
        try:
            _send_sized(answer, reply)
        finally:
            os.close(answer)

    def release(self, path: str, delete: bool) -> None:
        """Have the maker release the container whose directory is `path` (see the class
        docstring); what it raised is raised here."""
        answer_r, answer_w = os.pipe2(os.O_CLOEXEC)
        try:
            socket.send_fds(self._sock, [b"r" + pickle.dumps((path, delete))], [answer_w])
        except BaseException:
            os.close(answer_r)
            raise
        finally:
            os.close(answer_w)
        try:
            reply = _read_sized(answer_r)
        finally:
            os.close(answer_r)
        if not reply:
            raise ContainerError("the network agents' maker died while releasing a container")
        ok, value = pickle.loads(reply)
        if not ok:
            raise value

    def usable(self) -> bool:
        """Whether this process may ask the maker (its engine's, not a forked child's copy)
        and it still runs."""
        return os.getpid() == self._owner and self._sock.fileno() >= 0 and self.alive()

    @staticmethod
    def _agent(requests: int, replies: int, prepare: Prepare) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # (the maker's)
        ShimAgent._serve(requests, replies, prepare)

    def alive(self) -> bool:
        """Whether the maker still runs (it ends only with our socket, unless killed)."""
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def fork(self, requests: int, replies: int) -> None:
        """Have an agent forked that serves `requests` and answers on `replies` (the caller
        closes its copies); its pid comes with `forked`."""
        socket.send_fds(self._sock, [b"a"], [requests, replies])

    def forked(self) -> int:
        """The pid of the agent of the oldest `fork` not answered yet."""
        answer = self._sock.recv(256)
        if not answer or answer.startswith(b"!"):
            raise ContainerError("cannot fork the network agent: "
                                 f"{answer[1:].decode() or 'its maker is gone'}")
        return int(answer)

    def close(self) -> None:
        """End the maker (our end of its socket closes) and reap it."""
        if os.getpid() != self._owner or self._sock.fileno() < 0:
            return
        self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


class ShimAgent:
    """The network agent of the next shim-started container, forked ahead by `maker` (see
    the module docstring): `request` as the start begins, `attach` once the shim is ready;
    `close` in any case (an agent not used then ends, one only requested undoes its claim)."""

    def __init__(self, maker: AgentMaker) -> None:
        # to the agent: a socket, which can carry the shim's go-ahead pipe (see `attach`)
        to_agent, theirs = socket.socketpair(socket.AF_UNIX,
                                             socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        from_r, from_w = os.pipe2(os.O_CLOEXEC)
        try:
            maker.fork(theirs.fileno(), from_w)
        except BaseException:
            to_agent.close()
            os.close(from_r)
            raise
        finally:
            theirs.close()
            os.close(from_w)
        self._maker, self._pid = maker, 0
        self._owner = os.getpid()
        self._channel = to_agent
        self._to_agent, self._from_agent = to_agent.fileno(), from_r

    @property
    def pid(self) -> int:
        """The agent's pid, once its maker has forked it (waited for)."""
        if not self._pid:
            self._pid = self._maker.forked()
        return self._pid

    @staticmethod
    def _serve(requests: int, replies: int, prepare: Prepare) -> None:
        """Wait for the request and prepare it; wait for the container's pid and its shim's,
        wire it, answer, then stay until the shim has ended. End of file instead of the
        request: the engine let go of this agent unused (or died); instead of the pids: the
        start failed, and the claim is undone before this agent ends (the engine waits)."""
        data = _read_sized(requests)
        if not data:
            return
        watch = -1
        steps: Generator[Any, int | None, None] | None = None
        failure: BaseException | None = None
        try:
            steps = prepare(pickle.loads(data))
            next(steps)
        except BaseException as exc:  # noqa: BLE001 - answered once the pid has come
            failure, steps = exc, None
        with socket.socket(fileno=os.dup(requests)) as channel:
            pids, go_fds, _, _ = socket.recv_fds(channel, 64, 1)  # one small send
        if not pids:
            if steps is not None:
                with contextlib.suppress(StopIteration):
                    steps.send(None)
            return
        go = go_fds[0] if go_fds else -1
        try:
            if failure is not None:
                raise failure
            assert steps is not None and go >= 0
            pid, shim_pid = map(int, pids.split())
            try:
                watch = os.pidfd_open(shim_pid)  # it waits for its go meanwhile: it is alive
            except BaseException:
                with contextlib.suppress(StopIteration):
                    steps.send(None)  # the claim undone
                raise
            reply = pickle.dumps((True, steps.send(pid)))
            os.write(go, b"g")  # the shim lets its container go: it is wired
        except BaseException as exc:  # noqa: BLE001 - the engine reports it as a failed start
            reply = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
            steps = None
        finally:
            if go >= 0:
                os.close(go)  # (closed before the reply: the engine may give up on the shim)
        _send_sized(replies, reply)
        os.close(replies)
        if steps is not None:
            next(steps, None)  # what can wait after the reply
        if watch >= 0:
            readable([watch], None)  # until the shim has ended (its relay ends with us)

    def request(self, request: Any) -> None:
        """Tell the agent what to attach (what its `prepare` takes); it claims what needs no
        namespace meanwhile. The socket holds the request while its maker may still be forking
        it (`attach` reads the maker's answer first: why not, if it could not)."""
        try:
            _send_sized(self._to_agent, pickle.dumps(request))
        except BrokenPipeError:  # its maker could not fork it, and closed the socket
            self.pid  # noqa: B018 - raises why
            raise

    def attach(self, container_pid: int, shim_pid: int, go: int) -> tuple[dict, dict]:
        """Have the agent wire the container `container_pid` (after `request`) and stay as
        long as its shim `shim_pid`. Once it is wired, the agent itself lets the shim go on
        `go` (a copy of the shim's control pipe; one wake-up fewer on the start's path than
        through us) and closes its copy, before it answers."""
        self.pid  # noqa: B018 - its maker's answer first (why not, if it could not fork it)
        socket.send_fds(self._channel, [f"{container_pid} {shim_pid}".encode()], [go])
        return _attached(_read_sized(self._from_agent))

    def close(self, wait: float = 0.0) -> None:
        """Let go of the agent (a forked child of ours leaves it alone); one never used, or
        told what to attach but not the pid (its claim undone first), then ends, which `wait`
        seconds at most wait for (its reply pipe closes as it exits)."""
        if os.getpid() != self._owner or self._to_agent < 0:
            return
        self._channel.close()
        with contextlib.suppress(ContainerError, OSError):
            self.pid  # noqa: B018 - its maker's answer is read, whether it is used or not
        if wait:
            with contextlib.suppress(OSError):
                while readable([self._from_agent], wait) and os.read(self._from_agent, 4096):
                    pass
        os.close(self._from_agent)
        self._to_agent = self._from_agent = -1
