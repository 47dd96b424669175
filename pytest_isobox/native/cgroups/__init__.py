"""Container cgroups: limits, membership, stats, OOM detection and teardown.

The one interface the runtime uses, whatever this machine mixes of cgroup v1 and v2
(youki's libcgroups is the model: `common` holds the interface, `v1/` and `v2/` one module per
controller plus a manager, `manager` picks per controller where it lives).
"""

from __future__ import annotations

import re
from pathlib import Path

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.native.cgroups.common import Cgroup, CgroupStats, Limits
from pytest_isobox.native.cgroups.hierarchies import Layout, current_layout, parse_layout
from pytest_isobox.native.cgroups.manager import HybridCgroup, check_limits

__all__ = [
    "Cgroup", "CgroupStats", "Layout", "Limits", "cgroup_path_for_ns", "check_available",
    "current_layout", "list_cgroups", "open_cgroup", "parse_layout",
]

_NAME = re.compile(r"[A-Za-z0-9_.:@-]+(/[A-Za-z0-9_.:@-]+)*")


def _checked(name: str) -> str:
    if not _NAME.fullmatch(name) or any(part in (".", "..") for part in name.split("/")):
        raise InvalidSpec(f"invalid cgroup name {name!r}: expected relative words like "
                          "'isobox/<container id>'")
    return name


def open_cgroup(name: str, *, layout: Layout | None = None) -> Cgroup:
    """The cgroup `name` (e.g. `isobox/<container id>`, relative to each hierarchy's root).

    Opening touches nothing; `create` makes it. `layout` defaults to this machine's.
    """
    return HybridCgroup(_checked(name), layout or current_layout())


def check_available(limits: Limits, *, layout: Layout | None = None) -> None:
    """Raise EngineUnavailable naming the controller that `limits` need and this machine lacks."""
    check_limits(limits, layout or current_layout())


def list_cgroups(prefix: str = "isobox", *, layout: Layout | None = None) -> list[str]:
    """Names (`<prefix>/<child>`) of the cgroups under `prefix` in any hierarchy, for sweeps."""
    layout = layout or current_layout()
    roots = {h.mountpoint for h in layout.v1.values()}
    if layout.unified is not None:
        roots.add(layout.unified.mountpoint)
    found: set[str] = set()
    for root in roots:
        try:
            found.update(e.name for e in (root / _checked(prefix)).iterdir() if e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            continue
    return sorted(f"{prefix}/{child}" for child in found)


def cgroup_path_for_ns(name: str, *, layout: Layout | None = None) -> Path | None:
    """The directory a private cgroup namespace of `name` would be rooted at, when this machine
    is cgroup v2 only (Docker's rule for `cgroupns=private`); None on v1 or hybrid machines,
    where containers keep the host's cgroup namespace. Unshare CLONE_NEWCGROUP after `add`."""
    layout = layout or current_layout()
    if layout.unified is None or layout.v1:
        return None
    return layout.unified.mountpoint / _checked(name)
