"""The per-container parent: starts the container, relays its output to the log, records its
exit (status, OOM, final usage) and releases what it held.

A monitor is forked from the engine's process (no exec, no interpreter start). It stays the
container's parent for the container's whole life. A non-persistent container dies with the
process that created it: the monitor watches that owner through a pidfd, and kills and removes
the container when the owner is gone. The container itself dies with the monitor
(PR_SET_PDEATHSIG), so a `kill -9` of both still leaves no running process.

The monitor tells its owner what happened as JSON lines on a pipe: `started` (with the
container's state) or `failed` (exit code and message), then `exited`.

A *spare* monitor is forked ahead of time for the engine's next container: its container
process already waits as PID 1 of a new pid namespace inside the cgroup, because moving a
process into a cgroup waits for an RCU grace period on cgroup v1 (often 10-20 ms). It learns
its container's plan when the engine starts it, and cleans up after itself if never used.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import time
from collections.abc import Callable

from pytest_isobox.engine.records import Record, record
from pytest_isobox.native import linux
from pytest_isobox.native.forked import close_fds_except, fork_child
from pytest_isobox.native.logs import LogWriter
from pytest_isobox.native.planrunner import StartFailure
from pytest_isobox.native.runtime import (
    ContainerPlan,
    container_init,
    exit_code_of,
    receive_console,
)
from pytest_isobox.native.state import ContainerDir, mark_exited, mark_running, mark_start_failed
from pytest_isobox.native.terminal import WindowSizeFollower
from pytest_isobox.polling import readable
from pytest_isobox.processes import ProcessIdentity

# Callables the engine gives the monitor, all run in the monitor process.
AttachNetwork = Callable[[int], tuple[dict, dict]]  # netns pid -> (ips, ports)


@record
class Hooks(Record):
    """What the engine does around the container: cgroup, network and release."""

    create_cgroup: Callable[[], None]
    join_cgroup: Callable[[int], None]
    kill_cgroup: Callable[[], None]
    final_usage: Callable[[], dict]  # oom_killed, memory_peak, cpu_time_ns
    attach_network: AttachNetwork | None
    release: Callable[[bool], None]  # delete the state dir too?
    enter_userns: Callable[[], None] | None = None  # rootless: before the pid namespace
    has_limits: bool = True  # whether create_cgroup writes any limit


@record
class Terminal(Record):
    """The caller's side of an attached run: the fds the monitor relays to and from."""

    stdin: int | None
    stdout: int
    stderr: int


class MonitorHandle:
    """The creating process's view of a monitor it forked: its pid and its event pipe."""

    def __init__(self, pid: int, events_fd: int) -> None:
        self.pid = pid
        self.events_fd = events_fd
        self._buf = b""
        self.exited: dict | None = None

    def next_event(self, timeout: float | None = None) -> dict | None:
        """The next event; None on timeout or when the monitor has gone without a word."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self.events_fd < 0 or not readable([self.events_fd], remaining):
                return None
            chunk = os.read(self.events_fd, 4096)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        event = self._event(line)
        if event.get("event") == "exited":
            self.exited = event
        return event

    def _event(self, line: bytes) -> dict:
        """One event line as a dict with "event" (the Python monitor writes JSON)."""
        return json.loads(line)

    def reap(self) -> bool:
        """Collect the monitor's exit status if it has ended; True once it has."""
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return True
        return pid != 0

    def close(self) -> None:
        if self.events_fd >= 0:
            os.close(self.events_fd)
            self.events_fd = -1


def spawn_monitor(plan: ContainerPlan, cdir: ContainerDir, hooks: Hooks,
                  owner: ProcessIdentity | None, auto_remove: bool,
                  terminal: Terminal | None = None) -> MonitorHandle:
    """Fork the monitor; it starts the container. Returns at once (read the events)."""
    events_r, events_w = os.pipe2(os.O_CLOEXEC)

    def monitor() -> int:
        os.close(events_r)
        return _Monitor(plan, cdir, hooks, owner, auto_remove, terminal, events_w).run()

    pid = fork_child(monitor, name="monitor", die_with_parent=False)  # it watches its owner itself
    os.close(events_w)
    return MonitorHandle(pid, events_r)


# What a spare monitor asks the engine once its container process has its plan:
# (state dir, hooks, owner, auto_remove).
Prepare = Callable[[ContainerPlan], tuple[ContainerDir, Hooks, "ProcessIdentity | None", bool]]


class Spare:
    """A monitor forked ahead of time for container id `cid`: its container process already
    waits in a new pid namespace, inside the cgroup, so a start skips the slowest kernel step
    (moving a process between cgroups waits for an RCU grace period on cgroup v1)."""

    def __init__(self, cid: str, pid: int, events_fd: int, control_fd: int) -> None:
        self.cid = cid
        self.handle = MonitorHandle(pid, events_fd)
        self.control_fd = control_fd

    def launch(self, plan: ContainerPlan) -> MonitorHandle:
        """Start the container (its state dir must exist now) with `plan`, made here so the
        container process sets up while the spare prepares the rest; read events as usual."""
        import pickle  # (the Python monitor's alone: a shim's start never loads it)

        _write_all(self.control_fd, b"s" + pickle.dumps(plan))
        os.close(self.control_fd)
        return self.handle

    def discard(self) -> None:
        """Let the spare go: it kills its waiting process and removes its cgroup."""
        os.close(self.control_fd)
        self.handle.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.handle.pid, 0)


def spawn_spare(cid: str, prepare: Prepare, cgroup: CgroupHooks,
                owner: ProcessIdentity) -> Spare:
    """Fork a spare monitor for the future container `cid` (see `Spare`)."""
    events_r, events_w = os.pipe2(os.O_CLOEXEC)
    control_r, control_w = os.pipe2(os.O_CLOEXEC)

    def spare() -> int:
        os.close(events_r)
        os.close(control_w)
        return _run_spare(prepare, cgroup, owner, events_w, control_r)

    pid = fork_child(spare, name="spare", die_with_parent=False)  # it watches its owner itself
    os.close(events_w)
    os.close(control_r)
    return Spare(cid, pid, events_r, control_w)


@record
class CgroupHooks(Record):
    """The cgroup steps a spare takes before it knows its container."""

    create: Callable[[], None]
    join: Callable[[int], None]
    destroy: Callable[[], None]


def _detach_from_caller(owner: ProcessIdentity | None, keep: set[int]) -> None:
    """Ignore the caller's terminal signals, close every fd it gave us but `keep`."""
    gc.disable()
    if owner is None:  # persistent: leave the caller's session and terminal
        os.setsid()
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTSTP,
                signal.SIGTTIN, signal.SIGTTOU, signal.SIGPIPE, signal.SIGWINCH):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    close_fds_except(keep)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in keep:
            os.dup2(null, fd)
    if null not in keep and null > 2:
        os.close(null)


def _watch(owner: ProcessIdentity | None) -> int | None:
    """A pidfd on the owner (None for persistent containers); -1 if it is already gone."""
    if owner is None:
        return None
    try:
        fd = os.pidfd_open(owner.pid)
    except ProcessLookupError:
        return -1
    return fd if owner.alive() else -1


def _fork_pid1() -> int:
    """Fork the container process as PID 1 of a new pid namespace; the monitor's own later
    children (iptables, conntrack at release) stay in ours. A fork into a pid namespace whose
    PID 1 has died fails with ENOMEM, so without the switch back the release after the
    container's exit could not run a single subprocess."""
    ours = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)  # closed by the exec
    linux.unshare(linux.CLONE_NEWPID)
    child = os.fork()
    if child != 0:
        with contextlib.suppress(OSError):  # a user namespace may forbid it: no iptables there
            linux.setns(ours, linux.CLONE_NEWPID)
        os.close(ours)
    return child


def _run_spare(prepare: Prepare, cgroup: CgroupHooks, owner: ProcessIdentity, events_w: int,
               control_r: int) -> int:
    import pickle  # (loaded while the spare waits, not once its plan has come)

    _detach_from_caller(owner, {events_w, control_r})
    owner_fd = _watch(owner)
    if owner_fd == -1:
        return 1
    cgroup.create()
    channels = _Channels(tty=None, stdin=False)
    plan_r, plan_w = os.pipe2(os.O_CLOEXEC)
    child = _fork_pid1()
    if child == 0:
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        os.close(plan_w)
        plan = _receive_plan(plan_r)
        if plan is None:
            os._exit(1)
        container_init(plan, *channels.for_child(plan))
    os.close(plan_r)
    cgroup.join(child)
    ready = readable([control_r, owner_fd], None)
    message = b"" if owner_fd in ready else _read_all(control_r)
    if message[:1] != b"s":  # not needed after all
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        cgroup.destroy()
        return 0
    _write_all(plan_w, message[1:])  # the container sets up meanwhile; it waits for "go"
    os.close(plan_w)
    plan = pickle.loads(message[1:])  # from our own engine process
    cdir, hooks, container_owner, auto_remove = prepare(plan)
    monitor = _Monitor(plan, cdir, hooks, container_owner, auto_remove, None, events_w)
    if container_owner is None:
        os.setsid()
        owner_fd = None
    try:
        if hooks.has_limits:  # the container's limits, on the cgroup we already sit in
            hooks.create_cgroup()
    except Exception as exc:  # noqa: BLE001 - reported like any failed start
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        return monitor.failed(127, str(exc), owner_fd)
    return monitor.run_started(child, channels, owner_fd, joined=True)


def _receive_plan(fd: int) -> ContainerPlan | None:
    import pickle

    data = _read_all(fd)
    os.close(fd)
    return pickle.loads(data) if data else None  # written by our own monitor process


class _Channels:
    """Every fd between a monitor and its container process, made before the fork.

    `tty` None (a spare, which does not know yet) makes both the pipes and the console
    socket; the unused ones are closed once the plan is known."""

    def __init__(self, tty: bool | None, stdin: bool) -> None:
        self.tty = tty
        self.streams: dict[int, int] = {}  # fd to read -> log stream number
        self.stdin_w: int | None = None
        self.console = self.child_console = None
        self.parent_only: list[int] = []
        self.child_only: list[int] = []
        if tty is not False:
            self.console, self.child_console = socket.socketpair(socket.AF_UNIX,
                                                                 socket.SOCK_STREAM)
        self.null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        self.child_only.append(self.null)
        self.out_r = self.out_w = self.err_r = self.err_w = -1
        if tty is not True:
            self.out_r, self.out_w = os.pipe2(os.O_CLOEXEC)
            self.err_r, self.err_w = os.pipe2(os.O_CLOEXEC)
            self.child_only += [self.out_w, self.err_w]
            self.parent_only += [self.out_r, self.err_r]
        self.in_r = self.null
        if stdin and not tty:
            self.in_r, self.stdin_w = os.pipe2(os.O_CLOEXEC)
            self.child_only.append(self.in_r)
        self.go_r, self.go_w = os.pipe2(os.O_CLOEXEC)
        self.error_r, self.error_w = os.pipe2(os.O_CLOEXEC)
        self.ready_r, self.ready_w = os.pipe2(os.O_CLOEXEC)
        self.child_only += [self.go_r, self.error_w, self.ready_w]

    def for_child(self, plan: ContainerPlan
                  ) -> tuple[tuple[int, int, int], int | None, int, int, socket.socket | None]:
        """container_init's arguments after the plan: stdio, ready_w, go_r, error_w, console."""
        if plan.process.tty:
            return (self.null,) * 3, self.ready_w, self.go_r, self.error_w, self.child_console
        return ((self.in_r, self.out_w, self.err_w), self.ready_w, self.go_r, self.error_w,
                None)

    def after_fork(self, tty: bool) -> None:
        """Close the container's ends (and, now that tty is known, the unused channel)."""
        for fd in self.child_only:
            os.close(fd)
        if self.child_console is not None:
            self.child_console.close()
        if tty:
            for fd in self.parent_only:
                os.close(fd)
        else:
            self.streams[self.out_r], self.streams[self.err_r] = 1, 2
            if self.console is not None:
                self.console.close()
                self.console = None


class _Monitor:
    def __init__(self, plan: ContainerPlan, cdir: ContainerDir, hooks: Hooks,
                 owner: ProcessIdentity | None, auto_remove: bool, terminal: Terminal | None,
                 events_w: int) -> None:
        self.plan, self.cdir, self.hooks = plan, cdir, hooks
        self.owner, self.auto_remove, self.terminal = owner, auto_remove, terminal
        self.events_w = events_w
        self.state = cdir.read_state()
        self.window: WindowSizeFollower | None = None  # the container's pty, when attached

    def _emit(self, **event: object) -> None:
        try:
            os.write(self.events_w, json.dumps(event).encode() + b"\n")
        except OSError:  # the owner is gone; the state file says it all
            pass

    # -- life

    def run(self) -> int:
        t = self.terminal
        keep = {self.events_w}
        if t is not None:
            keep |= {fd for fd in (t.stdin, t.stdout, t.stderr) if fd is not None}
        _detach_from_caller(self.owner, keep)
        owner_fd = _watch(self.owner)
        if owner_fd == -1:
            return self._finish(None, owner_dead=True)
        try:
            self.hooks.create_cgroup()
            channels = _Channels(tty=self.plan.process.tty,
                                 stdin=t is not None and t.stdin is not None)
            if self.hooks.enter_userns is not None:  # before the pid namespace it will own
                self.hooks.enter_userns()
            child = _fork_pid1()
            if child == 0:
                linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
                container_init(self.plan, *channels.for_child(self.plan))
        except Exception as exc:  # noqa: BLE001 - a broken start is reported, never raised
            return self.failed(127, str(exc), owner_fd)
        return self.run_started(child, channels, owner_fd, joined=False)

    def run_started(self, child: int, channels: _Channels, owner_fd: int | None,
                    joined: bool) -> int:
        """From a forked container process to its end: cgroup, network, go, relay, exit."""
        try:
            streams, stdin_w = self._launch(child, channels, joined)
        except StartFailure as failure:
            return self.failed(failure.exit_code, failure.message, owner_fd)
        except Exception as exc:  # noqa: BLE001
            return self.failed(127, str(exc), owner_fd)
        child_fd = os.pidfd_open(child)
        mark_running(self.state, child, ProcessIdentity.current())
        self.cdir.write_state(self.state)  # before the event: the owner acts on it at once
        self._emit(event="started", state=self.state)
        status, owner_dead = self._relay(child, child_fd, owner_fd, streams, stdin_w)
        return self._finish(status, owner_dead)

    def _launch(self, child: int, channels: _Channels, joined: bool
                ) -> tuple[dict[int, int], int | None]:
        """Cgroup (unless joined), network, go; then the console and the exec's verdict."""
        t = self.terminal
        channels.after_fork(self.plan.process.tty)
        try:
            if not joined:
                self.hooks.join_cgroup(child)
            if self.hooks.attach_network is not None:
                if os.read(channels.ready_r, 1) != b"r":
                    raise StartFailure("the container process died before its network", 127)
                ips, ports = self.hooks.attach_network(child)
                self.state.update(ips=ips, ports={k: [list(b) for b in v]
                                                  for k, v in ports.items()})
            os.write(channels.go_w, b"g")
        except BaseException:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            raise
        finally:
            os.close(channels.go_w)
            os.close(channels.ready_r)
        streams, stdin_w = channels.streams, channels.stdin_w
        if channels.console is not None:
            master = receive_console(channels.console)
            channels.console.close()
            if master is not None:
                streams[master] = 1
                if t is not None:  # SIGWINCH: from the caller's terminal or its engine
                    self.window = WindowSizeFollower((t.stdin, t.stdout), master)
                    stdin_w = master if t.stdin is not None else None
        message = _read_all(channels.error_r)
        os.close(channels.error_r)
        if message:
            os.waitpid(child, 0)
            code, _, text = message.decode(errors="replace").partition("\n")
            raise StartFailure(text, int(code) if code.isdigit() else 127)
        return streams, stdin_w

    def _relay(self, child: int, child_fd: int, owner_fd: int | None, streams: dict[int, int],
               stdin_w: int | None) -> tuple[int, bool]:
        """Copy output to the log (and the caller's terminal) until the container has ended.

        Each stream keeps its order; between stdout and stderr (two pipes) the order is the
        one in which they are found ready, as with Docker."""
        log = LogWriter(self.cdir.log)
        t = self.terminal
        poller = select.poll()
        resized = self.window.fd if self.window is not None else None
        if resized is not None:  # first: a resize goes before keys read in the same poll
            poller.register(resized, select.POLLIN)
        for fd in (*streams, child_fd, *((owner_fd,) if owner_fd is not None else ())):
            poller.register(fd, select.POLLIN)
        stdin_r = t.stdin if t is not None and stdin_w is not None else None
        if stdin_r is not None:
            poller.register(stdin_r, select.POLLIN)
        status: int | None = None
        owner_dead = False
        while streams or status is None:
            for fd, _ in poller.poll():
                if fd in streams:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:  # EIO: a pty whose last slave was closed
                        data = b""
                    if not data:
                        poller.unregister(fd)
                        del streams[fd]
                        continue
                    log.write(streams[fd], data)
                    if t is not None:
                        _write_all(t.stdout if streams[fd] == 1 else t.stderr, data)
                elif fd == resized:
                    self.window.follow()  # type: ignore[union-attr]
                elif fd == child_fd:
                    poller.unregister(fd)
                    status = os.waitpid(child, 0)[1]
                    if stdin_r is not None:
                        poller.unregister(stdin_r)
                        stdin_r = None
                elif fd == owner_fd:
                    poller.unregister(fd)
                    owner_dead = True
                    os.kill(child, signal.SIGKILL)
                    self.hooks.kill_cgroup()
                elif fd == stdin_r:
                    data = os.read(fd, 65536)
                    if data:
                        _write_all(stdin_w, data)
                    else:
                        poller.unregister(fd)
                        stdin_r = None
                        if stdin_w not in streams:
                            os.close(stdin_w)
        log.close()
        return status, owner_dead

    # -- end

    def failed(self, code: int, message: str, owner_fd: int | None) -> int:
        self.cdir.write_state(mark_start_failed(self.state, code, message))
        self._emit(event="failed", exit_code=code, message=message)
        owner_dead = owner_fd is not None and not self.owner.alive()
        self._release(owner_dead)
        return code

    def _finish(self, status: int | None, owner_dead: bool) -> int:
        code = 137 if status is None else exit_code_of(status)
        usage = {}
        with contextlib.suppress(Exception):  # the exit is recorded even without usage figures
            usage = self.hooks.final_usage()
        mark_exited(self.state, code, time.time(), oom_killed=bool(usage.get("oom_killed")),
                    memory_peak=usage.get("memory_peak", 0),
                    cpu_time_ns=usage.get("cpu_time_ns", 0))
        if not owner_dead:
            self.cdir.write_state(self.state)
        self._emit(event="exited", exit_code=code, oom_killed=self.state["oom_killed"])
        self._release(owner_dead)
        return 0

    def _release(self, owner_dead: bool) -> None:
        delete = owner_dead or (self.owner is None and self.auto_remove)
        self.hooks.release(delete)



def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the reader went away: the log still has everything
        pass
