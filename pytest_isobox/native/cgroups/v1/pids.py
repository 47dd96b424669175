"""v1 pids: the task limit and the live task count (same files as v2)."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.native.cgroups.common import Controller, Limits, read_int, write_value


class Pids(Controller):
    name = "pids"

    def apply(self, path: Path, limits: Limits) -> None:
        if limits.pids and limits.pids > 0:
            write_value(path / "pids.max", limits.pids)

    def stats(self, path: Path) -> dict[str, int]:
        return {"pids": read_int(path / "pids.current")}
