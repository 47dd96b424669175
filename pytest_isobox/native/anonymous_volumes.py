"""An image's `VOLUME`s (and volume mounts without a name) as anonymous volumes, as Docker makes them: a new volume per path no
mount of the container covers, filled with what the image has there, removed with the
container (`rm`, `--rm`, a sweep: the engine's `_release`)."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from pytest_isobox.engine import MountSpec

_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")


def needed(image_config: dict, mounts: Iterable[MountSpec]) -> dict[str, str]:
    """Target path -> a new volume name, for each image volume no mount covers."""
    covered = {posixpath.normpath("/" + m.target.lstrip("/")) for m in mounts}
    wanted = [posixpath.normpath("/" + str(v).lstrip("/"))
              for v in image_config.get("Volumes") or {}]
    return {path: os.urandom(32).hex() for path in dict.fromkeys(wanted)
            if path not in covered}


def unnamed(mounts: Iterable[MountSpec]) -> dict[str, str]:
    """Target path -> a new volume name, for each volume mount given without a source
    (Docker's `--mount type=volume,target=T`: an anonymous volume, removed with the
    container as the image's are)."""
    return {m.target: os.urandom(32).hex() for m in mounts if m.type == "volume"
            and not m.source}


def fill(dest: Path, lowerdirs: list[str], target: str) -> None:
    """Copy the image's content at `target` into the empty volume `dest`: its layers (top
    first) applied bottom up, whiteouts deleting and opaque directories hiding what lower
    layers had, as overlayfs shows it."""
    relative = posixpath.normpath(target).lstrip("/")
    for layer in reversed(lowerdirs):
        src = os.path.join(layer, relative)
        if not _plain_dir(layer, relative):
            continue
        if _opaque(src):
            _clear(dest)
        _copy_layer(Path(src), dest)


def _plain_dir(layer: str, relative: str) -> bool:
    """Whether the path is a directory in this layer, reached through no symlink (a link
    in an image must not make us copy from the host)."""
    here = layer
    for part in relative.split("/"):
        here = os.path.join(here, part)
        if os.path.islink(here) or not os.path.isdir(here):
            return False
    return True


def _copy_layer(src: Path, dest: Path) -> None:
    for top, dirs, files in os.walk(src):
        rel = os.path.relpath(top, src)
        out = dest if rel == "." else dest / rel
        for name in [*dirs, *files]:
            source, target = os.path.join(top, name), out / name
            st = os.lstat(source)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # a whiteout: deleted here
                _remove(target)
            elif stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
                _remove(target)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(source), target)
                    os.lchown(target, st.st_uid, st.st_gid)
                elif stat.S_ISREG(st.st_mode):
                    shutil.copy2(source, target)
                    os.chown(target, st.st_uid, st.st_gid)
            else:
                if _opaque(source) or (target.exists() and not target.is_dir()):
                    _remove(target)
                target.mkdir(exist_ok=True)
                shutil.copystat(source, target, follow_symlinks=False)
                with contextlib.suppress(OSError):
                    os.chown(target, st.st_uid, st.st_gid)
        # symlinks to directories were copied as links: not walked
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(top, d))]


def _opaque(path: str) -> bool:
    for name in _OPAQUE:
        with contextlib.suppress(OSError):
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _clear(dest: Path) -> None:
    for entry in list(dest.iterdir()):
        _remove(entry)
