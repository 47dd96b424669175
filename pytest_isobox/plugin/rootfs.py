"""Root filesystems for `image(rootfs=...)`: a directory, a tar, or a recipe that makes one.

A recipe is an executable (like fixtures/busybox-rootfs) run as `recipe DIR`. The digest of a
rootfs covers names, types, modes, owners, link targets and contents, never mtimes, so the
same content imports once and keeps its image id (and the build cache above it) across runs.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tarfile
from pathlib import Path

from pytest_isobox.engine import InvalidSpec


def materialize(source: Path, workdir: Path) -> Path:
    """A directory or tar to import: source itself, or what the recipe made under workdir."""
    if not source.exists():
        raise InvalidSpec(f"rootfs {source}: no such file or directory")
    if source.is_dir() or not os.access(source, os.X_OK) or tarfile.is_tarfile(source):
        return source
    dest = workdir / "rootfs"
    result = subprocess.run([str(source), str(dest)], check=False, capture_output=True,
                            text=True)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InvalidSpec(f"rootfs recipe {source} failed with exit code {result.returncode}: "
                          f"{last[0]}")
    if not dest.is_dir():
        raise InvalidSpec(f"rootfs recipe {source} did not create the directory it was given")
    return dest


def rootfs_digest(source: Path) -> str:
    """sha256 of a rootfs directory's content and metadata, or of a tar file's bytes."""
    digest = hashlib.sha256()
    if source.is_file():
        with source.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, source)
            digest.update(f"{rel}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                digest.update(os.readlink(path).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                        digest.update(chunk)
            digest.update(b"\n")
    return digest.hexdigest()
