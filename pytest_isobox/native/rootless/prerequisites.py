"""What a user needs for rootless containers, checked up front with one clear error.

Facts checked: user namespaces allowed (user.max_user_namespaces > 0; Debian's old
kernel.unprivileged_userns_clone=1 where it exists; Ubuntu 24.04's AppArmor switch
kernel.apparmor_restrict_unprivileged_userns=0 where it exists), kernel 5.11+ (overlayfs in
a user namespace), overlayfs present, pidfd_open in Python. Subordinate ids are optional:
without them the mapping's note says what is limited; newuidmap is checked when they exist.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from pytest_isobox.engine import EngineUnavailable
from pytest_isobox.native.rootless.idmap import IdMapping

PROC_SYS = Path("/proc/sys")
MIN_KERNEL = (5, 11)


def _sysctl(name: str, root: Path) -> str | None:
    try:
        return (root / name.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def kernel_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def missing_prerequisite(proc_sys: Path = PROC_SYS, release: str | None = None,
                         filesystems: str | None = None) -> str | None:
    """The first thing missing for rootless containers, as a sentence; None when all is there."""
    if _sysctl("user.max_user_namespaces", proc_sys) == "0":
        return "user namespaces are disabled (sysctl user.max_user_namespaces=0)"
    if _sysctl("kernel.unprivileged_userns_clone", proc_sys) == "0":
        return ("unprivileged user namespaces are disabled: "
                "sysctl -w kernel.unprivileged_userns_clone=1")
    if _sysctl("kernel.apparmor_restrict_unprivileged_userns", proc_sys) == "1":
        return ("AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+): "
                "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor "
                "profile allowing `userns` for this Python")
    release = os.uname().release if release is None else release
    if kernel_version(release) < MIN_KERNEL:
        return (f"kernel {release} is too old: overlayfs in a user namespace needs "
                f"{MIN_KERNEL[0]}.{MIN_KERNEL[1]} or later")
    if filesystems is None:
        try:
            filesystems = Path("/proc/filesystems").read_text()
        except OSError:
            return "/proc is not mounted: cannot check for overlayfs"
    if not re.search(r"\boverlay\b", filesystems):
        return "overlayfs is not available (no 'overlay' in /proc/filesystems)"
    if not hasattr(os, "pidfd_open"):
        return "this Python lacks os.pidfd_open"
    return None


def check_rootless(mapping: IdMapping) -> None:
    """Raise EngineUnavailable naming what is missing for rootless containers with `mapping`."""
    missing = missing_prerequisite()
    if missing is None and not mapping.single:
        absent = [t for t in ("newuidmap", "newgidmap") if shutil.which(t) is None]
        if absent:
            missing = (f"{' and '.join(absent)} not found: subordinate ids need them "
                       "(Debian/Ubuntu: apt-get install uidmap)")
    if missing is not None:
        raise EngineUnavailable(f"rootless containers are not possible: {missing}")
