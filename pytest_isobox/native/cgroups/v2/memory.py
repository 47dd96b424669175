"""v2 memory: memory.max with no swap, usage, peak and the OOM kill counter."""

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
        """memory.max, and memory.swap.max=0 (when swap is accounted) so swap cannot dodge it."""
        if not limits.memory:
            return
        write_value(path / "memory.max", limits.memory)
        if (path / "memory.swap.max").exists():
            write_value(path / "memory.swap.max", 0)

    def stats(self, path: Path) -> dict[str, int]:
        """memory.peak exists from Linux 5.19; before that the peak is unknown, so current."""
        current = read_int(path / "memory.current")
        return {"memory_current": current,
                "memory_peak": read_int(path / "memory.peak", default=current)}

    def oom_kills(self, path: Path) -> int:
        """Processes the OOM killer killed in this cgroup or below (memory.events oom_kill)."""
        return read_keyed(path / "memory.events").get("oom_kill", 0)
