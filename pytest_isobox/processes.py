"""Process identity: a pid plus its start time names one process for good.

A reused pid has another start time, so records that name their owner this way (container
state, temp names, shared-container registries, Docker labels) can tell a live owner from a
dead one. The start time is kept in clock ticks since boot, not seconds since the epoch: a
stepped wall clock (NTP, a VM resumed) must never make a live process look dead to another.
psutil is the one source; a zombie (killed, not yet reaped) counts as dead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

_TICKS = os.sysconf("SC_CLK_TCK")


def _start_ticks(process: psutil.Process) -> int:
    # create_time() is boot time + ticks / CLK_TCK; boot_time() read at once takes the same btime.
    return round((process.create_time() - psutil.boot_time()) * _TICKS)


@dataclass(frozen=True)
class ProcessIdentity:
    """One process: its pid and start time (clock ticks since boot)."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The identity of a live process, None when it is gone or a zombie."""
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                if process.status() == psutil.STATUS_ZOMBIE:
                    return None
                return cls(pid, _start_ticks(process))
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            return None

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
