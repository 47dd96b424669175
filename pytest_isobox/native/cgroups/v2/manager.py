"""A cgroup in the unified (v2) hierarchy: one directory, its controllers switched on through
cgroup.subtree_control of every ancestor."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.engine import ContainerError, EngineUnavailable
from pytest_isobox.native.cgroups.common import (
    Controller,
    Limits,
    child_names,
    make_dir,
    prune_empty_ancestors,
    read_pids,
    read_value,
    remove_dir,
    write_value,
)
from pytest_isobox.native.cgroups.hierarchies import Hierarchy
from pytest_isobox.native.cgroups.v2 import freezer
from pytest_isobox.native.cgroups.v2.cpu import Cpu
from pytest_isobox.native.cgroups.v2.memory import Memory
from pytest_isobox.native.cgroups.v2.pids import Pids

CONTROLLERS: dict[str, Controller] = {c.name: c for c in (Memory(), Cpu(), Pids())}


class V2Cgroup:
    """The directory of cgroup `name` in the unified hierarchy, with `controllers` enabled."""

    def __init__(self, name: str, hierarchy: Hierarchy, controllers: list[str]) -> None:
        self.name = name
        self.root = hierarchy.mountpoint
        self.dir = hierarchy.mountpoint / name
        self.controllers = {c: CONTROLLERS[c] for c in controllers if c in CONTROLLERS}

    def create(self, limits: Limits) -> None:
        """mkdir each level top down, enabling our controllers for the level below, then write
        the limits in the leaf. A level that holds processes cannot delegate controllers
        (v2's no-internal-processes rule): that is reported as EngineUnavailable."""
        parent = self.root
        for part in self.name.split("/"):
            self._enable_below(parent)
            parent = parent / part
            make_dir(parent)
        for controller in self.controllers.values():
            controller.apply(self.dir, limits)

    def _enable_below(self, parent: Path) -> None:
        enabled = set(read_value(parent / "cgroup.subtree_control").split())
        missing = [c for c in self.controllers if c not in enabled]
        if not missing:
            return
        try:
            write_value(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
        except ContainerError as exc:
            raise EngineUnavailable(
                f"cannot enable cgroup v2 controllers {', '.join(missing)} below {parent} "
                f"({exc}); the cgroup may hold processes or not delegate them"
            ) from None

    def add(self, pid: int) -> None:
        write_value(self.dir / "cgroup.procs", pid)

    def procs(self) -> set[int]:
        return set(read_pids(self.dir))

    def stats(self) -> dict[str, int]:
        found = CONTROLLERS["cpu"].stats(self.dir)  # CPU time is kept even with cpu disabled
        for controller in self.controllers.values():
            found.update(controller.stats(self.dir))
        return found

    def oom_kills(self) -> int:
        memory = self.controllers.get("memory")
        return memory.oom_kills(self.dir) if isinstance(memory, Memory) else 0

    def kill(self) -> bool:
        """SIGKILL everything at once with cgroup.kill; False when the kernel lacks it."""
        if not freezer.can_kill(self.dir):
            return False
        freezer.kill(self.dir)
        return True

    def freeze(self) -> bool:
        return freezer.freeze(self.dir)

    def thaw(self) -> None:
        freezer.thaw(self.dir)

    def frozen(self) -> bool:
        return freezer.frozen(self.dir)

    def remove(self) -> list[Path]:
        """rmdir the leaf and then every ancestor that became empty; the leaf if still busy."""
        if not remove_dir(self.dir):
            return [self.dir]
        prune_empty_ancestors(self.dir, self.name)
        return []

    def prune_parents(self) -> None:
        """rmdir the ancestors left empty (`remove` already does it on cgroup v2)."""
        prune_empty_ancestors(self.dir, self.name)

    def exists(self) -> bool:
        return self.dir.is_dir()

    def children(self) -> set[str]:
        return child_names(self.dir)
