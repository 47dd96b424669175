"""One container's cgroup on whatever mix of v1 and v2 this machine has.

Each controller is used where it lives (hybrid machines hold some on v1 and some on v2), so a
cgroup is a `V1Cgroup` (a directory per v1 hierarchy), a `V2Cgroup` (one directory in the
unified hierarchy), or both. Callers see only the `Cgroup` interface.
"""

from __future__ import annotations

import os
import signal

from pytest_isobox.engine import ContainerError, EngineUnavailable
from pytest_isobox.native.cgroups.common import CgroupStats, Limits, polling, vanished
from pytest_isobox.native.cgroups.hierarchies import Layout
from pytest_isobox.native.cgroups.v1 import CONTROLLER_NAMES as V1_CONTROLLERS
from pytest_isobox.native.cgroups.v2 import CONTROLLER_NAMES as V2_CONTROLLERS

TYPE_CHECKING = False
if TYPE_CHECKING:  # (each imported when this machine uses it: a v1 host loads no v2 module)
    from pytest_isobox.native.cgroups.v1.manager import V1Cgroup
    from pytest_isobox.native.cgroups.v2.manager import V2Cgroup

KILL_TIMEOUT = 10.0  # seconds for killed tasks to leave, and for their cgroup to be removable
CREATE_ATTEMPTS = 20  # a concurrent destroy may remove an empty shared parent mid-create


def check_limits(limits: Limits, layout: Layout) -> None:
    """Raise EngineUnavailable naming the first controller these limits need that is missing."""
    for controller, reason in limits.controllers().items():
        if layout.where(controller) is None:
            raise EngineUnavailable(f"{layout.describe_missing(controller)} (needed for {reason})")


class HybridCgroup:
    """A `Cgroup` over the v1 hierarchies and the unified one, each used for what it holds.

    The unified hierarchy is joined when it holds a controller we use, or when v1 lacks the
    freezer or cpuacct (v2 freezes, kills and counts CPU time in every cgroup).
    """

    def __init__(self, name: str, layout: Layout) -> None:
        self.name = name
        self.layout = layout
        v1 = {c: h for c, h in layout.v1.items() if c in V1_CONTROLLERS}
        unified = layout.unified
        v2 = [c for c in V2_CONTROLLERS if unified is not None and layout.where(c) is unified]
        wants_v2 = unified is not None and (v2 or not {"freezer", "cpuacct"} <= set(v1))
        self.v1: V1Cgroup | None = None
        self.v2: V2Cgroup | None = None
        if v1:
            from pytest_isobox.native.cgroups.v1.manager import V1Cgroup

            self.v1 = V1Cgroup(name, v1)
        if wants_v2 and unified is not None:
            from pytest_isobox.native.cgroups.v2.manager import V2Cgroup

            self.v2 = V2Cgroup(name, unified, v2)
        self.parts: list[V1Cgroup | V2Cgroup] = [p for p in (self.v1, self.v2) if p is not None]

    def __repr__(self) -> str:
        return f"HybridCgroup({self.name!r})"

    def create(self, limits: Limits) -> None:
        """All or nothing: on any failure what was made is removed before the error rises."""
        check_limits(limits, self.layout)
        if not self.parts:
            raise EngineUnavailable("no cgroup hierarchy is mounted (see /proc/self/mountinfo)")
        try:
            for part in self.parts:
                for attempt in range(CREATE_ATTEMPTS):
                    try:
                        part.create(limits)
                        break
                    except OSError as exc:
                        if not vanished(exc) or attempt == CREATE_ATTEMPTS - 1:
                            raise
        except BaseException:
            self.destroy()
            raise

    def add(self, pid: int) -> None:
        for part in self.parts:
            part.add(pid)

    def procs_files(self) -> list[str]:
        """The cgroup.procs file of every hierarchy: writing a pid in each is `add`."""
        files = [str(d / "cgroup.procs") for d in self.v1.unique_dirs()] if self.v1 else []
        return files + ([str(self.v2.dir / "cgroup.procs")] if self.v2 is not None else [])

    def procs(self) -> list[int]:
        return sorted(set().union(*(part.procs() for part in self.parts)))

    def stats(self) -> CgroupStats:
        found: dict[str, int] = {}
        for part in self.parts:
            found.update(part.stats())
        if "pids" not in found:
            found["pids"] = len(self.procs())
        return CgroupStats(
            memory_current=found.get("memory_current", 0),
            memory_peak=found.get("memory_peak", 0),
            cpu_time_ns=found.get("cpu_time_ns", 0),
            pids=found["pids"],
        )

    def oom_killed(self) -> bool:
        return any(part.oom_kills() > 0 for part in self.parts)

    def kill_all(self) -> None:
        """Kill every task, then wait (bounded by KILL_TIMEOUT) until none is left.

        v2's cgroup.kill is atomic against forks. Otherwise the cgroup is frozen while each
        task gets SIGKILL, so none can fork a child that escapes the list; without a freezer,
        the kill is repeated until the cgroup stays empty.
        """
        if not self.exists() or not self.procs():
            return
        if not (self.v2 is not None and self.v2.kill()):
            self._kill_frozen()
        for _ in polling(KILL_TIMEOUT):
            pids = self.procs()
            if not pids:
                return
            _kill(pids)  # again: tasks that were mid-fork without a freezer
        raise ContainerError(
            f"cgroup {self.name} still has processes {pids} {KILL_TIMEOUT:.0f} s after SIGKILL")

    def freeze(self) -> bool:
        """Freeze every task (`pause`); False when no hierarchy has a freezer that settled."""
        return next((True for part in self.parts if part.freeze()), False)

    def thaw(self) -> None:
        for part in self.parts:
            part.thaw()

    def frozen(self) -> bool:
        return any(part.frozen() for part in self.parts)

    def _kill_frozen(self) -> None:
        frozen = next((part for part in self.parts if part.freeze()), None)
        try:
            _kill(self.procs())
        finally:
            if frozen is not None:
                frozen.thaw()

    def destroy(self) -> None:
        """Destroy child cgroups first, kill_all, then rmdir everywhere; idempotent. Shared
        parents left empty stay until `prune_parents`: the next container reuses them."""
        if not any(part.remove() for part in self.parts):  # the usual case: empty leaves
            return
        if not self.exists():
            return
        for child in sorted(set().union(*(part.children() for part in self.parts))):
            HybridCgroup(f"{self.name}/{child}", self.layout).destroy()
        self.kill_all()
        for part in self.parts:
            for _ in polling(KILL_TIMEOUT):
                busy = part.remove()  # a cgroup just emptied can be busy for a moment
                if not busy:
                    break
            else:
                raise ContainerError(f"cannot remove cgroup {busy[0]}: still busy")

    def exists(self) -> bool:
        return any(part.exists() for part in self.parts)

    def prune_parents(self) -> None:
        """rmdir the shared parents (`isobox/`) no cgroup uses any more."""
        for part in self.parts:
            part.prune_parents()


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
