"""Directory trees to tars, deterministically: the same tree always gives the same bytes.

Entries come depth first, names sorted by their bytes, a directory before its contents; owner,
mode, mtime (whole seconds), link targets, device numbers and the xattrs Docker keeps
(`security.capability`, `user.*`) are recorded; owner names are left empty. Files linked
several times inside the tree become one file plus hard-link entries. Sockets are skipped.

With `overlay_diff`, the tree is an overlay upper dir and its deletions become OCI whiteouts:
a 0:0 character device `x` becomes an empty file `.wh.x`, an opaque directory gets a
`.wh..wh..opq` entry right after its own, and overlay's private xattrs are dropped. With
`handover` too, the walk also makes the tree itself a lower dir holding exactly what the tar
says (it is about to become one): overlay xattrs other than opaque and sockets are removed.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path
from typing import IO

from pytest_isobox.engine import ContainerError
from pytest_isobox.images import whiteouts

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KEPT_XATTR = ("security.capability",)
_KEPT_XATTR_PREFIX = ("user.",)


def is_kept_xattr(name: str) -> bool:
    """The xattrs a layer records, as Docker's: file capabilities and user.* (not overlay's)."""
    return (name in _KEPT_XATTR or name.startswith(_KEPT_XATTR_PREFIX)) \
        and not whiteouts.is_overlay_xattr(name)


class _TreeTar:
    def __init__(self, out: IO[bytes], overlay_diff: bool, handover: bool = False) -> None:
        self._tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,  # noqa: SIM115
                                 encoding="utf-8", errors="surrogateescape")
        self._overlay = overlay_diff
        self._handover = handover
        self._links: dict[tuple[int, int], str] = {}
        self.count = 0
        self.content_bytes = 0  # regular files' sizes, each inode once

    def close(self) -> None:
        self._tar.close()

    def add_children(self, dir_fd: int, prefix: str) -> None:
        for name in sorted(os.listdir(dir_fd), key=os.fsencode):
            self.add(dir_fd, name, prefix + name)

    def add(self, parent_fd: int, name: str, arcname: str) -> None:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            if self._handover:  # keeping the directory's mtime, which its tar entry records
                parent = os.fstat(parent_fd)
                os.unlink(name, dir_fd=parent_fd)
                os.utime(parent_fd, ns=(parent.st_atime_ns, parent.st_mtime_ns))
            return
        xattrs = self._xattrs(parent_fd, name, arcname)
        if self._handover:
            self._drop_overlay_xattrs(parent_fd, name, xattrs)
        info = self._info(arcname, st, xattrs)
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            self._emit(info)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            try:
                if self._overlay and whiteouts.is_opaque(xattrs):
                    self._emit(self._marker(f"{arcname}/{whiteouts.OPAQUE_MARKER}", st,
                                            st.st_mode & 0o777))
                self.add_children(fd, arcname + "/")
            finally:
                os.close(fd)
        elif stat.S_ISREG(mode):
            self._add_file(parent_fd, name, info, st)
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(name, dir_fd=parent_fd)
            self._emit(info)
        elif self._overlay and whiteouts.is_overlay_whiteout(st):
            head, _, base = arcname.rpartition("/")
            hidden = f"{head}/{whiteouts.WHITEOUT_PREFIX}{base}" if head else \
                f"{whiteouts.WHITEOUT_PREFIX}{base}"
            self._emit(self._marker(hidden, st, 0o600))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            info.type = (tarfile.CHRTYPE if stat.S_ISCHR(mode) else
                         tarfile.BLKTYPE if stat.S_ISBLK(mode) else tarfile.FIFOTYPE)
            if not stat.S_ISFIFO(mode):
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self._emit(info)

    def _add_file(self, parent_fd: int, name: str, info: tarfile.TarInfo,
                  st: os.stat_result) -> None:
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key)
            if first is not None:
                info.type = tarfile.LNKTYPE
                info.linkname = first
                self._emit(info)
                return
            self._links[key] = info.name
        info.type = tarfile.REGTYPE
        info.size = st.st_size
        self.content_bytes += st.st_size
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        with os.fdopen(fd, "rb") as source:
            self._emit(info, source)

    def _emit(self, info: tarfile.TarInfo, source: IO[bytes] | None = None) -> None:
        self._tar.addfile(info, source)
        self.count += 1

    @staticmethod
    def _info(arcname: str, st: os.stat_result, xattrs: dict[str, bytes]) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.mode = st.st_mode & 0o7777
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        kept = {k: v for k, v in xattrs.items() if is_kept_xattr(k)}
        info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                            for k, v in sorted(kept.items())}
        return info

    @staticmethod
    def _marker(arcname: str, st: os.stat_result, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.type = tarfile.REGTYPE
        info.mode = mode
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        return info

    @staticmethod
    def _drop_overlay_xattrs(parent_fd: int, name: str, xattrs: dict[str, bytes]) -> None:
        """Remove overlay's bookkeeping (origin, impure, ...) but the opaque mark: a lower dir
        means by its xattrs only what its layer's tar says."""
        for key in xattrs:
            if whiteouts.is_overlay_xattr(key) and not key.endswith(".opaque"):
                os.removexattr(f"/proc/self/fd/{parent_fd}/{name}", key, follow_symlinks=False)

    def _xattrs(self, parent_fd: int, name: str, arcname: str) -> dict[str, bytes]:
        path = f"/proc/self/fd/{parent_fd}/{name}"
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return {}
        wanted = [n for n in names
                  if is_kept_xattr(n) or (self._overlay and whiteouts.is_overlay_xattr(n))]
        if self._overlay:
            for unsupported in whiteouts.UNSUPPORTED_OVERLAY_XATTRS:
                if unsupported in wanted:
                    raise ContainerError(
                        f"{arcname!r} in the upper dir carries {unsupported}: mount overlay with "
                        "redirect_dir=off,metacopy=off to commit a container"
                    )
        return {n: os.getxattr(path, n, follow_symlinks=False) for n in wanted}


def write_tree(root: Path, out: IO[bytes], *, overlay_diff: bool = False) -> int:
    """Write the contents of `root` (not root itself) as a tar to `out`; returns the entry count."""
    return _write_tree(root, _TreeTar(out, overlay_diff)).count


def write_handover_tree(upper: Path, out: IO[bytes]) -> tuple[int, int]:
    """Write an overlay upper dir as a layer tar (as `write_tree(overlay_diff=True)`) and make
    it an overlay lower dir with the same content (see the module doc); the caller owns
    `upper` and nothing may use it any more. Returns (entry count, content bytes)."""
    tree = _write_tree(upper, _TreeTar(out, overlay_diff=True, handover=True))
    return tree.count, tree.content_bytes


def _write_tree(root: Path, tree: _TreeTar) -> _TreeTar:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        tree.add_children(fd, "")
    finally:
        os.close(fd)
        tree.close()
    return tree


def write_entry_tree(parent_fd: int, name: str | None, out: IO[bytes], *, arcname: str) -> int:
    """Write entry `name` of `parent_fd` (None: the dir itself) and all below it as `arcname`."""
    tree = _TreeTar(out, overlay_diff=False)
    try:
        if name is None:
            tree.add_children(parent_fd, "")
        else:
            tree.add(parent_fd, name, arcname)
    finally:
        tree.close()
    return tree.count
