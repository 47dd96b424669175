"""The run reaper: one small process per engine that cleans up when the engine's process dies.

Engine-neutral: what it does on the owner's death is the engine's callback (the native
engine's `native/reaping.reap_home`; the docker engine's watchdog removes the run's
containers and networks on the daemon).

A container's monitor (isobox-shim or monitor.py) sees its owner die and kills the container,
but some things no monitor covers: a build's step containers that were created and never
started, a network made for the run, an attachment's addresses and rules (the shim leaves
them to Python), temp names of a layer being unpacked or a pull in flight. Without a reaper
they stay until the next engine opens the same home, which a CI runner or a developer may
never do.

The engine forks the reaper lazily, before its first resource (no cost for `isobox ps`), with
`forked.fork_child`; it runs in a session of its own (a kill of the run's process group does
not take it) and holds nothing of the engine's but a pidfd of the owner and the read end of a
pipe. When the engine closes normally it writes "c" down the pipe and the reaper exits at
once. When the pidfd says the owner has died, the reaper opens the home as the next engine
would and runs the same sweep (`sweep.Sweeper`), restricted to that owner's containers, then
exits. A reaper killed as well leaves the next engine's sweep as the safety net.

A closing engine (a CLI command's, a pytest session's) may instead `hand_over` what its close
would wait for (the native engine: veths and an unused default bridge going away): "f" and a
JSON document down the pipe; the reaper finishes that work after the owner has gone on, then
exits. Nothing remains once the owner and its reaper are gone. A handed-over reaper is not
waited for; a process that lives on (pytest sessions run in-process) collects its exit status
at its next reaper's fork or hand-over, so no more than the latest is ever a zombie.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_isobox.processes import ProcessIdentity

CLOSED = b"c"  # the engine closed normally: nothing to reap
FINISH = b"f"  # the engine closed and left the reaper work to finish (JSON after it, to EOF)

_handed: list[int] = []  # this process's reapers finishing handed-over work, not waited for


def collect_handed() -> None:
    """Reap the handed-over reapers that have finished (without waiting for the others)."""
    for pid in list(_handed):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # (reaped elsewhere: a SIGCHLD handler, a fork's copy)
            done = pid
        if done:
            _handed.remove(pid)


class RunReaper:
    """The engine's side of its reaper: `ensure` forks it once, `close` lets it go."""

    def __init__(self, owner: ProcessIdentity, reap: Callable[[ProcessIdentity], object],
                 name: str = "reaper", finish: Callable[[Any], object] | None = None) -> None:
        """`reap(owner)` runs in the reaper (named `isobox-<name>`) once `owner` has died;
        `finish(work)` runs there when the engine closes with `hand_over(work)`."""
        self.owner = owner
        self._reap = reap
        self._finish = finish
        self.name = name
        self.pid: int | None = None
        self._done_w = -1

    def ensure(self, before_fork: Callable[[], None] | None = None) -> None:
        """Fork the reaper unless there is one (only in the owner's own process: a fork of
        it, such as a monitor, has its copy of this object). `before_fork` runs first (the
        engine joins its threads)."""
        if self.pid is not None or os.getpid() != self.owner.pid:
            return
        from pytest_isobox.native.forked import fork_child  # ctypes: only once a run makes

        collect_handed()

        if before_fork is not None:
            before_fork()
        owner_fd = os.pidfd_open(self.owner.pid)
        done_r, done_w = os.pipe2(os.O_CLOEXEC)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.pid = fork_child(
                lambda: _watch(self.owner, owner_fd, done_r, self._reap, ready_w,
                               self._finish),
                name=self.name, keep_fds={owner_fd, done_r, ready_w}, die_with_parent=False)
            os.close(ready_w)
            ready_w = -1
            # back only once the reaper is in a session of its own: a kill of the run's whole
            # process group (a CI timeout) right after this must not take the reaper along
            os.read(ready_r, 1)
        finally:
            for fd in (owner_fd, done_r, ready_r, ready_w):
                if fd >= 0:
                    os.close(fd)
        self._done_w = done_w

    def close(self) -> None:
        """The engine has released everything: the reaper exits without reaping."""
        if self.pid is None or os.getpid() != self.owner.pid:
            return
        with contextlib.suppress(OSError):
            os.write(self._done_w, CLOSED)
        os.close(self._done_w)
        self._done_w = -1
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.pid = None


    def hand_over(self, work: Any) -> bool:
        """The engine has released everything but `work` (JSON-able), which its reaper
        finishes after this process has gone on (a CLI command exits without waiting for a
        bridge's deletion, a pytest session its network teardown): the reaper runs
        `finish(work)`, then exits. False when there is no reaper to hand it to (the caller
        does the work itself)."""
        if self.pid is None or self._finish is None or os.getpid() != self.owner.pid:
            return False
        import json

        collect_handed()
        pid, self.pid = self.pid, None
        try:
            os.write(self._done_w, FINISH + json.dumps(work).encode())
        except OSError:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)  # (the reaper is gone: the pipe is broken)
            return False
        finally:
            os.close(self._done_w)
            self._done_w = -1
        _handed.append(pid)  # not waited for: it ends once the work is done
        return True


def _watch(owner: ProcessIdentity, owner_fd: int, done_r: int,
           reap: Callable[[ProcessIdentity], object], ready_w: int,
           finish: Callable[[Any], object] | None = None) -> int:
    """The reaper's life: wait for "closed", "finish" or the owner's death; on death, reap."""
    os.setsid()  # a kill of the run's process group must not take the reaper with it
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTSTP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    os.write(ready_w, b"r")  # the owner waits for this before it makes anything
    os.close(ready_w)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):  # the caller's pipes must reach EOF when it dies
        os.dup2(null, fd)
    os.close(null)
    poller = select.poll()
    poller.register(owner_fd, select.POLLIN)
    poller.register(done_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == done_r:
                word = os.read(done_r, 1)
                if word == CLOSED:
                    return 0
                if word == FINISH and finish is not None:
                    work = _read_work(done_r)
                    if work is not None:  # (None: the owner died while writing it: reap)
                        _name_finisher()
                        with contextlib.suppress(Exception):  # the next sweep has the rest
                            finish(work)
                        return 0
                poller.unregister(done_r)  # EOF: the owner is exiting; its pidfd will say
            elif fd == owner_fd:
                try:
                    reap(owner)
                finally:
                    remove_owned_temp_dirs(owner)
                return 0


def _name_finisher() -> None:
    """Renamed while it finishes handed-over work: `isobox system check` waits for it."""
    from pytest_isobox.names import FINISHER_PROCESS
    from pytest_isobox.native.linux import set_process_name

    with contextlib.suppress(OSError):
        set_process_name(FINISHER_PROCESS)


def _read_work(fd: int) -> Any:
    """The JSON document after FINISH, up to the pipe's EOF; None when it is cut short."""
    import json

    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return None


def remove_owned_temp_dirs(owner: ProcessIdentity) -> list[Path]:
    """The dead `owner`'s temp dirs in the system's temp dir (a RUN step's heredoc scripts,
    a rootfs being imported by the plugin), whatever the engine; returns those removed."""
    import tempfile

    from pytest_isobox.images.atomic import remove_path
    from pytest_isobox.names import OWNED_TEMP_PREFIXES, owned_temp_prefix

    removed = []
    for prefix in OWNED_TEMP_PREFIXES:
        for path in Path(tempfile.gettempdir()).glob(owned_temp_prefix(prefix, owner.token("-"))
                                                     + "*"):
            remove_path(path)
            removed.append(path)
    return removed
