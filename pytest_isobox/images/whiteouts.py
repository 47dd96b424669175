"""Deletions across layers, in the two spellings we translate between.

In a layer tar (OCI, AUFS heritage) a deleted `name` is an empty file `.wh.name`, and a
directory whose lower contents are hidden holds an entry `.wh..wh..opq`. In an overlay
directory a deletion is a 0:0 character device and an opaque directory carries the xattr
`trusted.overlay.opaque=y`. Making those two overlay forms needs root (mknod, trusted.*
xattrs): this module is the only place that does it.
"""

from __future__ import annotations

import os
import stat

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# overlay's private xattrs: trusted.* as root, user.* with `userxattr` (rootless mounts)
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
# Overlay features whose upper dirs cannot be turned into a self-contained diff.
UNSUPPORTED_OVERLAY_XATTRS = tuple(f"{prefix}{feature}" for prefix in OVERLAY_XATTR_PREFIXES
                                   for feature in ("redirect", "metacopy"))


def is_overlay_whiteout(st: os.stat_result) -> bool:
    """Whether an upper-dir entry records a deletion (a 0:0 character device)."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def make_overlay_whiteout(parent_fd: int, name: str) -> None:
    """Record the deletion of `name` in an overlay lower dir (root only: mknod)."""
    os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent_fd)


def mark_opaque(dir_fd: int) -> None:
    """Make a lower dir hide what the layers below hold at its path (root only)."""
    os.setxattr(dir_fd, OPAQUE_XATTR, b"y")


def is_opaque(xattrs: dict[str, bytes]) -> bool:
    return any(xattrs.get(f"{prefix}opaque") == b"y" for prefix in OVERLAY_XATTR_PREFIXES)


def is_overlay_xattr(name: str) -> bool:
    """Whether an xattr belongs to overlayfs (never copied into or out of a layer)."""
    return name.startswith(OVERLAY_XATTR_PREFIXES)
