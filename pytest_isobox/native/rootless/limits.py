"""Which cgroup limits a rootless container can have: only those of a delegated v2 subtree.

A user may write cgroup files only where the system delegated a cgroup v2 subtree to it
(systemd's `Delegate=yes` for user@.service: the user's own cgroup directory, writable by
the user, with the controllers enabled in its `cgroup.subtree_control`). cgroup v1 is never
delegated. Containers' cgroups are made at `<top of the delegation>/isobox/<id>`. Where limits cannot be applied, `plan_limits` fails with EngineUnavailable saying
why, unless the user opted into best effort; then it returns what was applied and what was
skipped, for the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pytest_isobox.engine import EngineUnavailable
from pytest_isobox.native.cgroups import open_cgroup
from pytest_isobox.native.cgroups.common import Cgroup, CgroupStats, Limits
from pytest_isobox.native.cgroups.hierarchies import Hierarchy, Layout
from pytest_isobox.native.rootless import check_mode

V2_CONTROLLER = {"memory": "memory", "cpu": "cpu", "pids": "pids"}


@dataclass(frozen=True)
class Delegation:
    """A cgroup v2 directory this user may create children in, and its usable controllers."""

    path: Path | None
    controllers: frozenset[str] = frozenset()
    reason: str = ""  # why there is none, or which controllers are missing


@dataclass
class LimitsPlan:
    """What a container gets: the limits to write (in `delegation`), and those left out."""

    applied: Limits
    skipped: dict[str, str] = field(default_factory=dict)  # controller -> the limit asked
    delegation: Delegation | None = None

    def summary(self) -> str:
        """One line for the report: which limits hold and which were skipped."""
        asked = [f"{c}: {why}" for c, why in self.skipped.items()]
        held = list(self.applied.controllers().values())
        parts = [f"applied {', '.join(held)}" if held else "no limits applied"]
        if asked:
            parts.append(f"skipped {'; '.join(asked)} (rootless, no delegated cgroup)")
        return "; ".join(parts)


def _unified_mount(mountinfo: str) -> Path | None:
    for line in mountinfo.splitlines():
        fields = line.split(" - ")
        if len(fields) == 2 and fields[1].split()[0] == "cgroup2":
            return Path(fields[0].split()[4])
    return None


def _own_v2_path(proc_cgroup: str) -> str | None:
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def _owned_by(path: Path, uid: int) -> bool:
    """Whether `uid` may manage the cgroup `path`: it owns the directory and cgroup.procs."""
    try:
        return path.stat().st_uid == uid and (path / "cgroup.procs").stat().st_uid == uid
    except OSError:
        return False


def find_delegation(mountinfo: str | None = None, proc_cgroup: str | None = None,
                    uid: int | None = None) -> Delegation:
    """The cgroup v2 subtree delegated to the user that this process sits in, if any.

    Its top is returned (from this process's cgroup, up while the user owns the parent:
    `user@UID.service` under systemd), not this process's own cgroup: cgroup v2 enables
    controllers below a cgroup only when it holds no processes, and our own cgroup holds us.
    A top that holds processes itself is reported as no delegation, with the reason."""
    mountinfo = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
    proc_cgroup = Path("/proc/self/cgroup").read_text() if proc_cgroup is None else proc_cgroup
    uid = os.geteuid() if uid is None else uid
    mount = _unified_mount(mountinfo)
    if mount is None:
        return Delegation(None, reason="no cgroup v2 hierarchy is mounted (cgroup v1 cannot "
                                       "be delegated to users)")
    own = _own_v2_path(proc_cgroup)
    if own is None:
        return Delegation(None, reason="this process has no cgroup v2 membership")
    if own in ("", "/"):
        return Delegation(None, reason=f"this process sits in the root of {mount}, which is "
                                       "no delegated subtree")
    path = mount / own.lstrip("/")
    if not _owned_by(path, uid):
        try:
            owner: int | str = path.stat().st_uid
        except OSError as exc:
            return Delegation(None, reason=f"cannot read cgroup {path}: {exc.strerror}")
        return Delegation(None, reason=f"cgroup {path} is not delegated to uid {uid} (owned "
                                       f"by uid {owner}; systemd's Delegate=yes does that)")
    top = path
    while top.parent != mount and _owned_by(top.parent, uid):
        top = top.parent
    try:
        busy = bool((top / "cgroup.procs").read_text().split())
    except OSError:
        busy = False
    if busy:
        return Delegation(None, reason=f"the delegated cgroup {top} holds processes itself, so "
                                       "cgroup v2 enables no controllers below it (start pytest "
                                       "from a systemd user session, e.g. `systemd-run --user "
                                       "--scope -p Delegate=yes`)")
    try:
        available = frozenset((top / "cgroup.controllers").read_text().split())
    except OSError:
        available = frozenset()
    return Delegation(top, available & set(V2_CONTROLLER.values()),
                      "" if available else f"no controllers are enabled for {top}")


def plan_limits(limits: Limits, mode: str, delegation: Delegation) -> LimitsPlan:
    """Split `limits` into what the delegation can apply and what it cannot.

    In strict mode anything that cannot be applied raises EngineUnavailable naming the limit,
    the reason, and the opt-in; in best-effort mode it is listed in `skipped` instead.
    """
    check_mode(mode)
    needed = limits.controllers()
    skipped = {c: why for c, why in needed.items()
               if delegation.path is None or V2_CONTROLLER[c] not in delegation.controllers}
    if skipped and mode == "strict":
        reason = delegation.reason or (
            f"the delegated cgroup {delegation.path} lacks the "
            f"{', '.join(sorted(skipped))} controller")
        raise EngineUnavailable(
            f"rootless containers cannot have {', '.join(skipped.values())}: {reason}. "
            "Run as root, get a delegated cgroup v2 (systemd user session with Delegate=yes), "
            "or accept running without them: --isobox-limits=best-effort "
            "(NativeEngine(limits='best-effort'))")
    applied = Limits(
        memory=None if "memory" in skipped else limits.memory,
        cpus=None if "cpu" in skipped else limits.cpus,
        cpu_shares=None if "cpu" in skipped else limits.cpu_shares,
        pids=None if "pids" in skipped else limits.pids,
    )
    return LimitsPlan(applied, skipped, delegation if delegation.path else None)


def delegated_layout(delegation: Delegation) -> Layout:
    """A cgroup layout whose unified hierarchy is the delegated subtree, with only its
    controllers: cgroups made in it never touch a file above the delegation (the user could
    not write there) and never ask for a controller it was not given."""
    assert delegation.path is not None
    return Layout(unified=Hierarchy(2, delegation.path, delegation.controllers))


def delegated_cgroup(delegation: Delegation, name: str) -> Cgroup:
    """The cgroup `name` (`isobox/<container id>`) inside the delegated subtree, or a
    `NoCgroup` where there is none."""
    if delegation.path is None or not delegation.controllers:
        return NoCgroup(name)
    return open_cgroup(name, layout=delegated_layout(delegation))


class NoCgroup:
    """The `Cgroup` of a rootless container without a delegated subtree: nothing to write,
    nothing to read. Its processes still all end with it: killing the container's PID 1
    ends its pid namespace."""

    def __init__(self, name: str) -> None:
        self.name = name

    def create(self, limits: Limits) -> None:
        """Nothing: `plan_limits` decided that no limit can be applied."""

    def add(self, pid: int) -> None:
        """Nothing: there is no cgroup of ours to join."""

    def procs(self) -> list[int]:
        return []

    def procs_files(self) -> list[str]:
        """None: a shim's container process joins no cgroup."""
        return []

    def stats(self) -> CgroupStats:
        return CgroupStats(memory_current=0, memory_peak=0, cpu_time_ns=0, pids=0)

    def oom_killed(self) -> bool:
        return False

    def kill_all(self) -> None:
        """Nothing: the monitor kills PID 1, which takes the pid namespace down."""

    def destroy(self) -> None:
        """Nothing was created."""

    def exists(self) -> bool:
        return False
