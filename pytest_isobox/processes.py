"""Process identity: a pid plus its start time names one process for good.

A reused pid has another start time, so records that name their owner this way (container
state, temp names, shared-container registries, Docker labels) can tell a live owner from a
dead one. The start time is kept in clock ticks since boot, not seconds since the epoch: a
stepped wall clock (NTP, a VM resumed) must never make a live process look dead to another.
The one source is the kernel's own record, field 22 of /proc/<pid>/stat (what psutil derives
create_time from, exact here with no float round trip, and no 6 ms import for every command);
a zombie (killed, not yet reaped) counts as dead.
"""

from __future__ import annotations

import os

from pytest_isobox.engine.records import FrozenRecord, record


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and
    parentheses): [state, ppid, ...]; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(b")") + 2:].decode().split()


@record
class ProcessIdentity(FrozenRecord):
    """One process: its pid and start time (clock ticks since boot)."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The identity of a live process, None when it is gone or a zombie."""
        if pid <= 0:
            return None
        fields = _stat_fields(pid)
        if fields is None or fields[0] in ("Z", "X"):  # zombie or dead: not running any more
            return None
        return cls(pid, int(fields[19]))  # starttime, field 22 of the whole line

    @classmethod
    def current(cls) -> ProcessIdentity:
        identity = cls.of(os.getpid())
        assert identity is not None
        return identity

    def alive(self) -> bool:
        """True while this very process runs (not a later one with the same pid)."""
        return ProcessIdentity.of(self.pid) == self

    # As a dict in JSON records.
    @classmethod
    def load(cls, raw: dict | None) -> ProcessIdentity | None:
        return cls(int(raw["pid"]), int(raw["start"])) if raw else None

    def dump(self) -> dict:
        return {"pid": self.pid, "start": self.start}

    # As text in names and labels: "PID:START".
    @classmethod
    def parse(cls, token: str, sep: str = ":") -> ProcessIdentity | None:
        pid, found, start = token.partition(sep)
        if not (found and pid.isdigit() and start.isdigit()):
            return None
        return cls(int(pid), int(start))

    def token(self, sep: str = ":") -> str:
        return f"{self.pid}{sep}{self.start}"
