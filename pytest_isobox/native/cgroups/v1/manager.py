"""A cgroup in the v1 hierarchies: one directory per mounted hierarchy, co-mounted
controllers (e.g. `cpu,cpuacct`) sharing one."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.native.cgroups.common import (
    Controller,
    Limits,
    cgroup_ancestors,
    child_names,
    make_dir,
    prune_empty_ancestors,
    read_pids,
    remove_dir,
    write_value,
)
from pytest_isobox.native.cgroups.hierarchies import Hierarchy
from pytest_isobox.native.cgroups.v1.cpu import Cpu
from pytest_isobox.native.cgroups.v1.cpuacct import Cpuacct
from pytest_isobox.native.cgroups.v1.cpuset import Cpuset
from pytest_isobox.native.cgroups.v1.devices import Devices
from pytest_isobox.native.cgroups.v1.freezer import Freezer
from pytest_isobox.native.cgroups.v1.memory import Memory
from pytest_isobox.native.cgroups.v1.pids import Pids

CONTROLLERS: dict[str, Controller] = {
    c.name: c for c in (Memory(), Cpu(), Cpuacct(), Cpuset(), Pids(), Freezer(), Devices())
}


class V1Cgroup:
    """The directories of cgroup `name` under each v1 hierarchy holding a controller we use."""

    def __init__(self, name: str, hierarchies: dict[str, Hierarchy]) -> None:
        self.name = name
        self.controllers = {c: CONTROLLERS[c] for c in hierarchies if c in CONTROLLERS}
        self.dirs = {c: hierarchies[c].mountpoint / name for c in self.controllers}

    def unique_dirs(self) -> list[Path]:
        """One directory per hierarchy, co-mounted controllers counted once."""
        return list(dict.fromkeys(self.dirs.values()))

    def create(self, limits: Limits) -> None:
        """mkdir the chain of directories top down in every hierarchy, preparing each new level
        (cpuset), then write the limits in the leaf."""
        for directory in self.unique_dirs():
            here = [c for c, d in self.dirs.items() if d == directory]
            for level in reversed([directory, *cgroup_ancestors(directory, self.name)]):
                make_dir(level)
                for controller in here:
                    self.controllers[controller].prepare(level)
        for controller, directory in self.dirs.items():
            self.controllers[controller].apply(directory, limits)

    def add(self, pid: int) -> None:
        for directory in self.unique_dirs():
            write_value(directory / "cgroup.procs", pid)

    def procs(self) -> set[int]:
        return {pid for directory in self.unique_dirs() for pid in read_pids(directory)}

    def stats(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for controller, directory in self.dirs.items():
            found.update(self.controllers[controller].stats(directory))
        return found

    def oom_kills(self) -> int:
        memory = self.controllers.get("memory")
        return memory.oom_kills(self.dirs["memory"]) if isinstance(memory, Memory) else 0

    def freeze(self) -> bool:
        """Freeze all tasks; False when there is no freezer or it did not settle."""
        freezer = self.controllers.get("freezer")
        return isinstance(freezer, Freezer) and freezer.freeze(self.dirs["freezer"])

    def thaw(self) -> None:
        freezer = self.controllers.get("freezer")
        if isinstance(freezer, Freezer):
            freezer.thaw(self.dirs["freezer"])

    def remove(self) -> list[Path]:
        """rmdir the leaf and then every ancestor that became empty; the leaves still busy."""
        busy = [directory for directory in self.unique_dirs() if not remove_dir(directory)]
        for directory in self.unique_dirs():
            if directory not in busy:
                prune_empty_ancestors(directory, self.name)
        return busy

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.unique_dirs())

    def children(self) -> set[str]:
        return set().union(*(child_names(d) for d in self.unique_dirs()))

