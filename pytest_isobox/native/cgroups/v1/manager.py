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

_PREPARED: set[Path] = set()  # shared parents this process has made sure of

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
        """mkdir the chain of directories top down in every hierarchy, preparing each level
        (cpuset, devices), then write the limits in the leaf.

        The shared parents (`isobox/`) are prepared once per process and outlive the
        container (`prune_parents` removes them when idle); under them a new leaf inherits
        what its controllers need, so the common case is one mkdir per hierarchy."""
        for directory in self.unique_dirs():
            here = [self.controllers[c] for c, d in self.dirs.items() if d == directory]
            ancestors = cgroup_ancestors(directory, self.name)
            if ancestors and ancestors[0] not in _PREPARED:
                for level in reversed(ancestors):  # made by us or being made by another
                    make_dir(level)
                    for controller in here:
                        controller.prepare(level)
                _PREPARED.add(ancestors[0])
            try:
                make_dir(directory)
            except FileNotFoundError:  # another process pruned the idle parent meanwhile
                _PREPARED.discard(ancestors[0])
                raise
            # A parent being made by another process may not be ready yet when our leaf
            # is made: a leaf checks what it inherited.
            for controller in here:
                if not (ancestors and controller.inherited and controller.prepared(directory)):
                    controller.prepare(directory)
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

    def frozen(self) -> bool:
        freezer = self.controllers.get("freezer")
        return isinstance(freezer, Freezer) and freezer.frozen(self.dirs["freezer"])

    def remove(self) -> list[Path]:
        """rmdir the leaf; the leaves still busy. Its idle parents stay (`prune_parents`)."""
        return [directory for directory in self.unique_dirs() if not remove_dir(directory)]

    def prune_parents(self) -> None:
        """rmdir the shared parents this cgroup's removal left empty (none in use is touched)."""
        for directory in self.unique_dirs():
            prune_empty_ancestors(directory, self.name)
            _PREPARED.difference_update(cgroup_ancestors(directory, self.name))

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.unique_dirs())

    def children(self) -> set[str]:
        return set().union(*(child_names(d) for d in self.unique_dirs()))

