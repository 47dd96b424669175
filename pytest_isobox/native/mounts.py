"""What a container's mounts are made of: Docker's lists (masked and read-only paths, device
nodes, /dev links), the init layer, and the mount primitives the start plan's Python executor
uses (symlink-safe paths in the root, pivot_root, masking). Which mounts a container gets, in
which order, is decided in startplan.py only.

All of these run inside the container's own mount namespace, made private first, so nothing
is ever mounted in the host's namespace and a dead container leaves no mount behind.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pytest_isobox.engine import ContainerError
from pytest_isobox.engine.records import FrozenRecord, record
from pytest_isobox.native import linux
from pytest_isobox.native.linux import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
)
from pytest_isobox.native.rootless import mounts as rootless_mounts

# moby/oci/defaults.go
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
           "urandom": (1, 9), "tty": (5, 0)}
DEV_SYMLINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore"}
SHM_SIZE = 64 * 1024 * 1024
INIT_PATH = "/sbin/docker-init"  # where Docker puts its init (tini) too

# Mount points every container needs, kept out of the container's upper dir (and so out of
# committed layers) by living in a shared read-only layer on top of the image, as Docker's
# "-init" layer does.
INIT_LAYER_DIRS = ("dev", "proc", "sys", "etc")
INIT_LAYER_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")


@record
class ResolvedMount(FrozenRecord):
    """A user mount ready to apply: kind bind (host `source`) or tmpfs, at `target`."""

    kind: str
    target: str
    source: str = ""
    read_only: bool = False
    size: int | None = None


def ensure_init_layer(parent: Path) -> Path:
    """The shared init layer under `parent`, made once per home and atomically."""
    layer = parent / "init-layer"
    if layer.is_dir():
        return layer
    tmp = parent / f".init-layer.{os.getpid()}.tmp"
    tmp.mkdir(parents=True)
    for name in INIT_LAYER_DIRS:
        (tmp / name).mkdir(mode=0o755)
    for name in INIT_LAYER_FILES:
        (tmp / name).touch(mode=0o644)
    try:
        os.rename(tmp, layer)
    except OSError:  # another process made it first
        for name in INIT_LAYER_FILES:
            (tmp / name).unlink()
        for name in INIT_LAYER_DIRS:
            (tmp / name).rmdir()
        tmp.rmdir()
    return layer


def make_mounts_private() -> None:
    """Stop mount events from propagating between this namespace and the host's."""
    linux.mount(None, "/", None, MS_REC | MS_PRIVATE)


def overlay_options(lowerdirs: list[str], upper: str, work: str, userxattr: bool = False,
                    ) -> str:
    """The overlay mount data; `lowerdirs` top first (overlayfs's order); `userxattr` in a
    user namespace (overlay's own state in user.overlay.* xattrs, see rootless.mounts)."""
    if userxattr:
        return rootless_mounts.overlay_options(lowerdirs, upper, work)
    return f"lowerdir={':'.join(lowerdirs)},upperdir={upper},workdir={work}"


def secure_join(root: str, path: str) -> str:
    """`root/path` with every symlink resolved as if `root` were `/`: never outside `root`."""
    pending = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    followed = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        try:
            target = os.readlink(os.path.join(root, *resolved, part))
        except OSError:
            resolved.append(part)
            continue
        followed += 1
        if followed > 40:
            raise ContainerError(f"too many levels of symbolic links in {path}")
        if target.startswith("/"):
            resolved = []
        pending = [p for p in target.split("/") if p not in ("", ".")] + pending
    return os.path.join(root, *resolved)


def mountpoint(root: str, path: str, is_dir: bool) -> str:
    """Make the mount point for `path` below `root` (a dir, or an empty file) and return it."""
    target = secure_join(root, path)
    if is_dir:
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    return target


def pivot_root(root: str) -> None:
    """Make `root` the namespace's `/` and detach the old root, so the host tree is gone."""
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount(".", MNT_DETACH)
    os.chdir("/")


def mask_path(path: str) -> None:
    """Docker's masked path (after pivot_root): an empty read-only tmpfs over a directory,
    /dev/null over a file; absent paths are left alone."""
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return
    if is_dir:
        linux.mount("tmpfs", path, "tmpfs", MS_RDONLY)
    else:
        linux.mount("/dev/null", path, None, MS_BIND)


def make_read_only(path: str) -> None:
    """Docker's read-only path (after pivot_root): bound onto itself, remounted read-only."""
    if os.path.exists(path):
        linux.mount(path, path, None, MS_BIND | MS_REC)
        linux.mount(None, path, None,
                    MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
