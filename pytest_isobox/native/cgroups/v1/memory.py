"""v1 memory: the limit (with swap held to it), usage, peak and the OOM kill counter."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.native.cgroups.common import (
    Controller,
    Limits,
    read_int,
    read_keyed,
    write_value,
)


class Memory(Controller):
    name = "memory"

    def apply(self, path: Path, limits: Limits) -> None:
        """memory.limit_in_bytes, and memory.memsw.limit_in_bytes to the same value so swap
        cannot dodge it; without swap accounting, swappiness 0 keeps the cgroup off swap.
        The plain limit goes first: the kernel refuses memsw below it."""
        if not limits.memory:
            return
        memsw = path / "memory.memsw.limit_in_bytes"
        if memsw.exists() and limits.memory > read_int(memsw):  # raised (update): memsw first
            write_value(memsw, limits.memory)
        write_value(path / "memory.limit_in_bytes", limits.memory)
        if memsw.exists():
            write_value(memsw, limits.memory)
        elif (path / "memory.swappiness").exists():
            write_value(path / "memory.swappiness", 0)

    def stats(self, path: Path) -> dict[str, int]:
        return {
            "memory_current": read_int(path / "memory.usage_in_bytes"),
            "memory_peak": read_int(path / "memory.max_usage_in_bytes"),
        }

    def oom_kills(self, path: Path) -> int:
        """How many processes the OOM killer killed in this cgroup (memory.oom_control)."""
        return read_keyed(path / "memory.oom_control").get("oom_kill", 0)
