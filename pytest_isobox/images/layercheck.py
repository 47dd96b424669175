"""Does an unpacked layer still hold exactly what its tar says?

Used by `ImageStore.verify`: every entry of the layer tar (the last one wins for a path) is
compared with the unpacked directory: type, mode, owner, size and content for files, link
targets, device numbers, hard links, whiteouts (0:0 devices) and opaque markers (xattr).
Extra files that no entry accounts for are reported too.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from pathlib import Path

from pytest_isobox.images import whiteouts
from pytest_isobox.images.tarsafe import RootedDir, entry_parts

_CHUNK = 1 << 20


def _expected(tar: tarfile.TarFile) -> dict[tuple[str, ...], tuple]:
    expected: dict[tuple[str, ...], tuple] = {}
    for member in tar:
        parts = tuple(entry_parts(member.name))
        if not parts:
            continue
        name = parts[-1]
        if name == whiteouts.OPAQUE_MARKER:
            expected[parts] = ("opaque",)
        elif name.startswith(whiteouts.WHITEOUT_PREFIX):
            expected[(*parts[:-1], name[len(whiteouts.WHITEOUT_PREFIX):])] = ("whiteout",)
        elif member.isfile():
            digest = hashlib.sha256()
            source = tar.extractfile(member)
            while source is not None and (chunk := source.read(_CHUNK)):
                digest.update(chunk)
            expected[parts] = ("file", member.mode & 0o7777, member.uid, member.gid,
                               digest.hexdigest())
        elif member.isdir():
            expected[parts] = ("dir", member.mode & 0o7777, member.uid, member.gid)
        elif member.issym():
            expected[parts] = ("symlink", member.linkname)
        elif member.islnk():
            expected[parts] = ("hardlink", tuple(entry_parts(member.linkname)))
        else:
            expected[parts] = ("node", member.mode & 0o7777, member.devmajor, member.devminor)
    return expected


def _actual(dirs: RootedDir, parts: tuple[str, ...], kind: str) -> tuple | None:
    try:
        parent = dirs.open_dir(list(parts[:-1]), create=False, what="/".join(parts))
        if kind == "opaque":
            path = f"/proc/self/fd/{parent}"
            xattrs = {name: os.getxattr(path, name) for name in os.listxattr(path)
                      if whiteouts.is_overlay_xattr(name)}
            return ("opaque",) if whiteouts.is_opaque(xattrs) else None
        st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    except OSError:
        return None
    mode = st.st_mode
    if kind == "whiteout":
        return ("whiteout",) if whiteouts.is_overlay_whiteout(st) else None
    if kind == "hardlink" or stat.S_ISREG(mode):
        return ("inode", st.st_dev, st.st_ino) if kind == "hardlink" else \
            ("file", mode & 0o7777, st.st_uid, st.st_gid, _file_digest(parent, parts[-1]))
    if stat.S_ISDIR(mode):
        return ("dir", mode & 0o7777, st.st_uid, st.st_gid)
    if stat.S_ISLNK(mode):
        return ("symlink", os.readlink(parts[-1], dir_fd=parent))
    return ("node", mode & 0o7777, os.major(st.st_rdev), os.minor(st.st_rdev))


def _file_digest(parent: int, name: str) -> str:
    digest = hashlib.sha256()
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    with os.fdopen(fd, "rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def differences(diff_dir: Path, tar: tarfile.TarFile, limit: int = 5) -> list[str]:
    """Paths (at most `limit`) where `diff_dir` differs from the layer `tar`; [] if it matches."""
    expected = _expected(tar)
    found: list[str] = []
    with RootedDir(diff_dir) as dirs:
        for parts, want in expected.items():
            kind = want[0]
            have = _actual(dirs, parts, kind)
            if kind == "hardlink":
                target = _actual(dirs, want[1], "hardlink")
                ok = have is not None and have == target
            else:
                ok = have == want
            if not ok:
                found.append("/".join(parts))
        accounted = {"/".join(p) for p in expected} | {
            "/".join(p[:i]) for p in expected for i in range(1, len(p))}
        for dirpath, dirnames, filenames in os.walk(diff_dir):
            for name in dirnames + filenames:
                rel = os.path.relpath(os.path.join(dirpath, name), diff_dir)
                if rel not in accounted:
                    found.append(rel)
    return found[:limit]
