"""The mounts of a rootless container that differ from the rootful ones (mounts.py).

In a user namespace the kernel refuses mknod of devices and the trusted.* xattrs overlayfs
keeps its own state in. So: device nodes are the host's, bind-mounted onto empty files (the
start plan's device steps, startplan.py); overlay is mounted with `userxattr` (its opaque-directory and redirect state in user.overlay.*
xattrs, which the user can write); devpts gets gid=5 (tty) only when that gid is mapped.

Layers must match: opaque directories unpacked by root carry trusted.overlay.opaque, which an
overlay in a user namespace neither reads nor sees, so a root-made layer store would show
files a layer deleted. A rootless store is the user's own, its layers unpacked inside the
user namespace (whiteouts are 0:0 character devices, which the kernel lets anyone create).
"""

from __future__ import annotations

OPAQUE_XATTR = "user.overlay.opaque"  # what trusted.overlay.opaque is under `userxattr`
TTY_GID = 5


def overlay_options(lowerdirs: list[str], upper: str, work: str) -> str:
    """The overlay mount data for a user namespace (top layer first)."""
    return f"lowerdir={':'.join(lowerdirs)},upperdir={upper},workdir={work},userxattr"


def devpts_options(tty_gid_mapped: bool) -> str:
    """devpts data: a new instance, as Docker; the tty group only if the namespace has it."""
    return "newinstance,ptmxmode=0666,mode=0620" + (f",gid={TTY_GID}" if tty_gid_mapped else "")


def setgroups_allowed(pid: int | str = "self") -> bool:
    """False in a single-id user namespace, where setgroups(2) is denied for good: that of
    process `pid` (read from outside, the engine asks its holder's)."""
    try:
        with open(f"/proc/{pid}/setgroups") as f:
            return f.read().strip() == "allow"
    except FileNotFoundError:
        return True


def gid_mapped(gid: int, pid: int | str = "self") -> bool:
    """Whether `gid` has a host group in the user namespace of process `pid`."""
    from pytest_isobox import idmaps

    return idmaps.mapped("gid", gid, pid)
