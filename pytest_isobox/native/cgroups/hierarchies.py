"""Where each cgroup controller lives on this machine: a v1 hierarchy, the v2 one, or nowhere.

Read from /proc/self/mountinfo (which hierarchies are mounted where, with which v1
controllers), /proc/cgroups (which controllers the kernel enabled) and the unified hierarchy's
cgroup.controllers. Nothing about a particular machine is assumed: pure v1, hybrid (v1
controllers plus a unified mount at /sys/fs/cgroup/unified) and pure v2 all parse the same way.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

from pytest_isobox.engine import EngineUnavailable
from pytest_isobox.engine.records import FrozenRecord, factory, record

MOUNTINFO = Path("/proc/self/mountinfo")
PROC_CGROUPS = Path("/proc/cgroups")
V1_CONTROLLERS = frozenset({
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "misc",
    "net_cls", "net_prio", "perf_event", "pids", "rdma",
})


@record
class Hierarchy(FrozenRecord):
    """One mounted cgroup hierarchy: version 1 or 2, its mount point, the controllers it holds."""

    version: int
    mountpoint: Path
    controllers: frozenset[str]


@record
class Layout(FrozenRecord):
    """The cgroup hierarchies of a machine, and for each controller the one that holds it."""

    v1: dict[str, Hierarchy] = factory(dict)  # controller -> its v1 hierarchy
    unified: Hierarchy | None = None

    def where(self, controller: str) -> Hierarchy | None:
        """The hierarchy holding `controller`, or None when it is not available."""
        if controller in self.v1:
            return self.v1[controller]
        if self.unified is not None and controller in self.unified.controllers:
            return self.unified
        return None

    def describe_missing(self, controller: str) -> str:
        """Why `controller` is unavailable, naming what was looked at."""
        places = "no cgroup v1 hierarchy mounts it"
        if self.unified is not None:
            places += f" and {self.unified.mountpoint / 'cgroup.controllers'} does not list it"
        else:
            places += " and no cgroup v2 hierarchy is mounted"
        return f"cgroup controller {controller!r} is not available: {places}"

    def without(self, *controllers: str) -> Layout:
        """The same layout minus some v1 controllers (to exercise the v2 paths on a hybrid)."""
        kept = {name: h for name, h in self.v1.items() if name not in controllers}
        return Layout(kept, self.unified)


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (`\\040`)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def enabled_controllers(proc_cgroups: str) -> frozenset[str]:
    """v1 controller names the kernel enabled: those /proc/cgroups marks so, or all known ones
    when it is empty (kernels built without it)."""
    enabled = set()
    for line in proc_cgroups.splitlines():
        parts = line.split()
        if len(parts) == 4 and not line.startswith("#") and parts[3] == "1":
            enabled.add(parts[0])
    return V1_CONTROLLERS & enabled if enabled else V1_CONTROLLERS


def parse_layout(
    mountinfo: str,
    proc_cgroups: str,
    read_unified_controllers: Callable[[Path], str],
) -> Layout:
    """The layout described by a mountinfo text and a /proc/cgroups text.

    `read_unified_controllers(mountpoint)` returns the content of that v2 mount's
    cgroup.controllers. The first mount of each hierarchy wins (later ones are bind mounts).
    """
    enabled = enabled_controllers(proc_cgroups)
    v1: dict[str, Hierarchy] = {}
    unified: Hierarchy | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, after = left.split(), right.split()
        if len(fields) < 5 or len(after) < 3:
            continue
        fstype, super_options = after[0], after[2]
        mountpoint = Path(_unescape(fields[4]))
        if fstype == "cgroup":
            names = frozenset(o for o in super_options.split(",") if o in enabled)
            if names and not any(name in v1 for name in names):
                hierarchy = Hierarchy(1, mountpoint, names)
                v1.update((name, hierarchy) for name in names)
        elif fstype == "cgroup2" and unified is None:
            listed = read_unified_controllers(mountpoint).split()
            unified = Hierarchy(2, mountpoint, frozenset(listed))
    if unified is not None:  # a controller bound to v1 is never usable on v2 at the same time
        unified = Hierarchy(2, unified.mountpoint, unified.controllers - set(v1))
    return Layout(v1, unified)


def _read_controllers(mountpoint: Path) -> str:
    try:
        return (mountpoint / "cgroup.controllers").read_text()
    except OSError:
        return ""


@functools.cache
def current_layout() -> Layout:
    """This machine's layout, read once per process (mounts of cgroups do not move at runtime)."""
    try:
        mountinfo = MOUNTINFO.read_text()
    except OSError as exc:
        raise EngineUnavailable(f"cannot read the cgroup layout: {exc}") from None
    try:
        proc_cgroups = PROC_CGROUPS.read_text()
    except OSError:
        proc_cgroups = ""
    return parse_layout(mountinfo, proc_cgroups, _read_controllers)
