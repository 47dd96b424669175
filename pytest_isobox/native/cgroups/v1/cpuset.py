"""v1 cpuset: a new cgroup starts with empty cpus and mems, and no task may join it so."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.native.cgroups.common import Controller, read_value, write_value


class Cpuset(Controller):
    name = "cpuset"
    inherited = True

    def prepared(self, path: Path) -> bool:
        return all(read_value(path / file) for file in ("cpuset.cpus", "cpuset.mems"))

    def prepare(self, path: Path) -> None:
        """Copy cpuset.cpus and cpuset.mems from the parent where they are still empty, and
        have the kernel copy them into every child made from now on (clone_children).

        Runs top down, so the parent is always filled by then.
        """
        for file in ("cpuset.cpus", "cpuset.mems"):
            if not read_value(path / file):
                write_value(path / file, read_value(path.parent / file))
        write_value(path / "cgroup.clone_children", 1)
