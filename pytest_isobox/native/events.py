"""The engine's events, kept in its home: one JSON line each in `<home>/events/journal`,
appended by whichever process changed something (one write(2) per line, O_APPEND, so lines
of several writers never mix). Readers filter by time and follow the file with inotify.

A container's `die` may be seen by several processes (the server's watcher, the CLI's
`wait`); each line carries a key and readers drop a key they have already given.
Past JOURNAL_LIMIT bytes the journal becomes `journal.1` (the one before is dropped), so
history is bounded as dockerd's is."""

from __future__ import annotations

import contextlib
import json
import os
import select
import time
from collections.abc import Iterator
from pathlib import Path

from pytest_isobox.engine import EngineEvent

JOURNAL_LIMIT = 4 * 1024 * 1024
IDLE_SECONDS = 1.0  # a follower yields None this often when nothing happens
IN_CREATE = 0x00000100
IN_MOVED_TO = 0x00000080


def journal_dir(home: Path) -> Path:
    return Path(home) / "events"


def record(home: Path, event: EngineEvent, key: str | None = None) -> None:
    """Append `event` (its time now unless set). Never raises: an event that cannot be
    written must not fail the change it reports."""
    with contextlib.suppress(OSError):
        directory = journal_dir(home)
        line = {"type": event.type, "action": event.action, "id": event.id,
                "attributes": event.attributes, "time": event.time or time.time()}
        if key:
            line["key"] = key
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(directory / "journal", flags, 0o640)
        except FileNotFoundError:  # the home's first event
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / "journal", flags, 0o640)
        try:
            os.write(fd, data)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > JOURNAL_LIMIT:
            with contextlib.suppress(FileNotFoundError):
                os.rename(directory / "journal", directory / "journal.1")


def _parse(raw: bytes) -> tuple[EngineEvent, str | None] | None:
    try:
        line = json.loads(raw)
        return (EngineEvent(str(line["type"]), str(line["action"]), str(line["id"]),
                            {str(k): str(v) for k, v in (line.get("attributes") or {}).items()},
                            float(line["time"])), line.get("key"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a line cut by a crash: skipped


class _Follower:
    """Reads new lines of the journal, reopening it when it was rotated."""

    def __init__(self, directory: Path, *, from_start: bool) -> None:
        self.directory = directory
        self.fd: int | None = None
        self.inode = 0
        self.buf = b""
        self._open(from_start)

    def _open(self, from_start: bool) -> None:
        try:
            fd = os.open(self.directory / "journal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.inode, self.buf = fd, os.fstat(fd).st_ino, b""
        if not from_start:
            os.lseek(fd, 0, os.SEEK_END)

    def lines(self) -> list[bytes]:
        out: list[bytes] = []
        while True:
            if self.fd is not None:
                while chunk := os.read(self.fd, 1 << 16):
                    self.buf += chunk
                *done, self.buf = self.buf.split(b"\n")
                out.extend(done)
            try:
                now = os.stat(self.directory / "journal").st_ino
            except FileNotFoundError:
                return out
            if now == self.inode:
                return out
            self._open(from_start=True)  # rotated (or made): the new file from its start

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read(home: Path, *, since: float | None = None, until: float | None = None,
         follow: bool = True) -> Iterator[EngineEvent | None]:
    """Events from `since` to `until` (kept ones first, then, following, new ones as they
    are written); None every IDLE_SECONDS of quiet while following."""
    from pytest_isobox.native import linux

    directory = journal_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    watch = None
    if follow:
        watch = linux.inotify_init()
        watched = linux.inotify_add_watch(watch, str(directory),
                                          linux.IN_MODIFY | IN_CREATE | IN_MOVED_TO)
    seen: set[str] = set()
    try:
        history = since is not None or not follow
        follower = _Follower(directory, from_start=history)
        raw: list[bytes] = []
        if history:
            with contextlib.suppress(FileNotFoundError):
                raw = (directory / "journal.1").read_bytes().split(b"\n")
        raw += follower.lines()
        while True:
            for item in raw:
                parsed = _parse(item) if item.strip() else None
                if parsed is None:
                    continue
                event, key = parsed
                if key is not None:
                    if key in seen:
                        continue
                    seen.add(key)
                if since is not None and event.time < since:
                    continue
                if until is not None and event.time > until:
                    continue
                yield event
            if watch is None or (until is not None and time.time() > until):
                return
            wait = IDLE_SECONDS if until is None else max(0.0, min(IDLE_SECONDS,
                                                                   until - time.time()))
            if select.select([watch], [], [], wait)[0]:
                with contextlib.suppress(BlockingIOError):
                    os.read(watch, 65536)
            else:
                yield None
            raw = follower.lines()
    finally:
        if watch is not None:
            linux.inotify_close(watch, watched)
        with contextlib.suppress(UnboundLocalError):
            follower.close()

