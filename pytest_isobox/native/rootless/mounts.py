"""The mounts of a rootless container that differ from the rootful ones (mounts.py).

In a user namespace the kernel refuses mknod of devices and the trusted.* xattrs overlayfs
keeps its own state in. So: device nodes are the host's, bind-mounted onto empty files (a bind
keeps the host mount's device access, which a tmpfs made in a user namespace would deny);
overlay is mounted with `userxattr` (its opaque-directory and redirect state in user.overlay.*
xattrs, which the user can write); devpts gets gid=5 (tty) only when that gid is mapped.

Layers must match: opaque directories unpacked by root carry trusted.overlay.opaque, which an
overlay in a user namespace neither reads nor sees, so a root-made layer store would show
files a layer deleted. A rootless store is the user's own, its layers unpacked inside the
user namespace (whiteouts are 0:0 character devices, which the kernel lets anyone create).
"""

from __future__ import annotations

import os

from pytest_isobox.native import linux
from pytest_isobox.native.linux import MS_BIND

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")  # Docker's, as in mounts.py
OPAQUE_XATTR = "user.overlay.opaque"  # what trusted.overlay.opaque is under `userxattr`
TTY_GID = 5


def overlay_options(lowerdirs: list[str], upper: str, work: str) -> str:
    """The overlay mount data for a user namespace (top layer first)."""
    return f"lowerdir={':'.join(lowerdirs)},upperdir={upper},workdir={work},userxattr"


def bind_devices(dev: str) -> None:
    """Docker's device nodes in `dev` (a fresh tmpfs) as binds of the host's own nodes."""
    for name in DEVICES:
        target = os.path.join(dev, name)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        linux.mount(f"/dev/{name}", target, None, MS_BIND)


def devpts_options(tty_gid_mapped: bool) -> str:
    """devpts data: a new instance, as Docker; the tty group only if the namespace has it."""
    return "newinstance,ptmxmode=0666,mode=0620" + (f",gid={TTY_GID}" if tty_gid_mapped else "")


def setgroups_allowed() -> bool:
    """False in a single-id user namespace, where setgroups(2) is denied for good."""
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "allow"
    except FileNotFoundError:
        return True


def gid_mapped(gid: int) -> bool:
    """Whether `gid` has a host group in this process's user namespace."""
    with open("/proc/self/gid_map") as f:
        for line in f:
            inside, _, count = (int(n) for n in line.split())
            if inside <= gid < inside + count:
                return True
    return False
