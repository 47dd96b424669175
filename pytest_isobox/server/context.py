"""What every handler shares: the engine behind one lock (engines are written for one caller
at a time), the exec instances, and a condition that tells waiters a container changed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pytest_isobox.engine import Engine, NetworkAttachment
from pytest_isobox.server.sessions import SessionReaper, remove_session

T = TypeVar("T")


@dataclass
class ExecInstance:
    """An exec created by `POST /containers/{id}/exec`, run by `/exec/{id}/start`."""

    id: str
    container: str
    cmd: list[str]
    env: dict[str, str]
    user: str | None
    workdir: str | None
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    stream: Any = None  # the engine's ProcessStream while it runs (for resize)
    size: tuple[int, int] | None = None  # the last size asked for (rows, columns)


@dataclass
class ServerContext:
    engine: Engine
    home: Path | None = None
    default_ip: str = "127.0.0.1"  # where a port binding without HostIp is published (--ip)
    lock: threading.RLock = field(default_factory=threading.RLock)
    changed: threading.Condition = field(default_factory=threading.Condition)
    generation: int = 0
    execs: dict[str, ExecInstance] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)  # container id -> runs started here
    exits: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (run, exit code)
    removed: set[str] = field(default_factory=set)
    auto_remove: set[str] = field(default_factory=set)  # docker's --rm, done by the server
    attachments: dict[str, list[NetworkAttachment]] = field(default_factory=dict)  # at create
    stdin_once: dict[str, bool] = field(default_factory=dict)  # OpenStdin containers: StdinOnce
    stdins: dict[str, Any] = field(default_factory=dict)  # running ones: their StdinSink
    listed: dict[str, tuple[tuple, dict]] = field(default_factory=dict)  # list's inspect docs

    sessions: SessionReaper = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = SessionReaper(lambda session: remove_session(self, session))

    def streams(self) -> bool:
        """Whether the engine hands out stdio (exec_stream, start_stream)."""
        return "streams" in getattr(self.engine, "capabilities", ())

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn` (an engine method) with the engine to ourselves."""
        with self.lock:
            return fn(*args, **kwargs)

    def notify(self) -> None:
        """A container was started, stopped or removed: wake those waiting on one."""
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    def record_start(self, cid: str) -> int:
        """A run of `cid` began (call holding `lock`, with the engine's start); its number."""
        with self.changed:
            run = self.starts[cid] = self.starts.get(cid, 0) + 1
            self.generation += 1
            self.changed.notify_all()
            return run

    def record_exit(self, cid: str, run: int, code: int) -> None:
        with self.changed:
            self.exits[cid] = (run, code)
            self.generation += 1
            self.changed.notify_all()

    def record_removed(self, cid: str) -> None:
        with self.changed:
            self.removed.add(cid)
            self.auto_remove.discard(cid)
            self.attachments.pop(cid, None)
            self.stdin_once.pop(cid, None)
            self.listed.pop(cid, None)
            self.generation += 1
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Block until `predicate()` (checked under the condition) holds."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def wait_change(self, seen: int, timeout: float | None = None) -> int:
        """Block until the generation moves past `seen`; the new generation."""
        with self.changed:
            self.changed.wait_for(lambda: self.generation != seen, timeout)
            return self.generation
