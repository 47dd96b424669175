"""v1 cpuacct: CPU time used, in nanoseconds."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.native.cgroups.common import Controller, read_int


class Cpuacct(Controller):
    name = "cpuacct"

    def stats(self, path: Path) -> dict[str, int]:
        return {"cpu_time_ns": read_int(path / "cpuacct.usage")}
