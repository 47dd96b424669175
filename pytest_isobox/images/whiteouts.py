"""Deletions across layers, in the two spellings we translate between.

In a layer tar (OCI, AUFS heritage) a deleted `name` is an empty file `.wh.name`, and a
directory whose lower contents are hidden holds an entry `.wh..wh..opq`. In an overlay
directory a deletion is a 0:0 character device and an opaque directory carries the xattr
`trusted.overlay.opaque=y`, or `user.overlay.opaque=y` in a user namespace, where trusted.*
is refused and overlay is mounted with `userxattr` (which reads and writes user.overlay.*).
The kernel lets a user namespace's root make 0:0 character devices (whiteouts), no others.
This module is the only place that makes those overlay forms.
"""

from __future__ import annotations

import os
import stat

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
USER_OPAQUE_XATTR = "user.overlay.opaque"
_FULL_ID_MAP = "0 0 4294967295"
# overlay's private xattrs: trusted.* as root, user.* with `userxattr` (rootless mounts)
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
# Overlay features whose upper dirs cannot be turned into a self-contained diff.
UNSUPPORTED_OVERLAY_XATTRS = tuple(f"{prefix}{feature}" for prefix in OVERLAY_XATTR_PREFIXES
                                   for feature in ("redirect", "metacopy"))


def is_overlay_whiteout(st: os.stat_result) -> bool:
    """Whether an upper-dir entry records a deletion (a 0:0 character device)."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def make_overlay_whiteout(parent_fd: int, name: str) -> None:
    """Record the deletion of `name` in an overlay lower dir (mknod: root, also in a userns)."""
    os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent_fd)


def in_user_namespace() -> bool:
    """Whether this process lives in a user namespace other than the host's (its uid map is
    not the identity over all ids). Read each time: a process may enter one (setns)."""
    try:
        with open("/proc/self/uid_map") as f:
            lines = f.read().split("\n")
    except OSError:
        return False
    return [" ".join(line.split()) for line in lines if line.strip()] != [_FULL_ID_MAP]


def opaque_xattr() -> str:
    """The opaque xattr overlay reads here: user.* in a user namespace (`userxattr`)."""
    return USER_OPAQUE_XATTR if in_user_namespace() else OPAQUE_XATTR


def mark_opaque(dir_fd: int) -> None:
    """Make a lower dir hide what the layers below hold at its path."""
    os.setxattr(dir_fd, opaque_xattr(), b"y")


def is_opaque(xattrs: dict[str, bytes]) -> bool:
    return any(xattrs.get(f"{prefix}opaque") == b"y" for prefix in OVERLAY_XATTR_PREFIXES)


def is_overlay_xattr(name: str) -> bool:
    """Whether an xattr belongs to overlayfs (never copied into or out of a layer)."""
    return name.startswith(OVERLAY_XATTR_PREFIXES)
