"""Every mount a container gets, in one place (runc's rootfs_linux.go plays this role).

All of these run inside the container's own mount namespace, after `make_mounts_private`, so
nothing is ever mounted in the host's namespace and a dead container leaves no mount behind.
`build_rootfs` works below the new root before `pivot_root`; `protect_paths` works after it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pytest_isobox.engine import ContainerError
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
    MS_STRICTATIME,
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


@dataclass(frozen=True)
class ResolvedMount:
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


def mount_overlay(lowerdirs: list[str], upper: str, work: str, target: str,
                  userxattr: bool = False) -> None:
    """Mount the image layers (read-only) with the container's writable upper dir at `target`.

    Lower dirs that share one parent are given relative to it (the kernel resolves them
    against the working directory), so many layers fit in the one-page mount data.
    """
    parents = {os.path.dirname(d) for d in lowerdirs}
    cwd = None
    if len(parents) == 1 and len(lowerdirs) > 1:
        cwd = os.getcwd()
        os.chdir(parents.pop())
        lowerdirs = [os.path.basename(d) for d in lowerdirs]
    try:
        linux.mount("overlay", target, "overlay", 0, overlay_options(lowerdirs, upper, work,
                                                                     userxattr))
    finally:
        if cwd is not None:
            os.chdir(cwd)


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


def _mountpoint(root: str, path: str, is_dir: bool) -> str:
    """Make the mount point for `path` below `root` (a dir, or an empty file) and return it."""
    target = secure_join(root, path)
    if is_dir:
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    return target


def mount_defaults(root: str, new_netns: bool, rootless: bool = False) -> None:
    """Docker's default mounts: /proc, /dev (tmpfs + nodes + links), /dev/pts, /dev/shm,
    /dev/mqueue, /sys read-only. Rootless: the host's device nodes are bound, not made."""
    proc = _mountpoint(root, "/proc", True)
    linux.mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev = _mountpoint(root, "/dev", True)
    linux.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    if rootless:
        rootless_mounts.bind_devices(dev)
    for name, (major, minor) in () if rootless else DEVICES.items():
        path = f"{dev}/{name}"
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)
    for name, target in DEV_SYMLINKS.items():
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/pts", 0o755)
    tty_gid = not rootless or rootless_mounts.gid_mapped(rootless_mounts.TTY_GID)
    linux.mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                rootless_mounts.devpts_options(tty_gid))
    os.mkdir(f"{dev}/shm", 0o1777)
    linux.mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                f"mode=1777,size={SHM_SIZE}")
    os.mkdir(f"{dev}/mqueue", 0o755)
    linux.mount("mqueue", f"{dev}/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    sys_dir = _mountpoint(root, "/sys", True)
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    if new_netns:
        linux.mount("sysfs", sys_dir, "sysfs", flags)
    else:  # sysfs of the host's network namespace: bind it read-only, as runc does
        linux.mount("/sys", sys_dir, None, MS_BIND | MS_REC)
        linux.mount(None, sys_dir, None, MS_BIND | MS_REMOUNT | flags)


def bind_file(root: str, source: str, target: str, read_only: bool = False) -> None:
    """Bind a host file (the state dir's hosts, hostname, resolv.conf; the init) at `target`."""
    point = _mountpoint(root, target, False)
    linux.mount(source, point, None, MS_BIND)
    if read_only:
        linux.mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def mount_user(root: str, mount: ResolvedMount) -> None:
    """A bind mount, named volume (a bind of its _data dir) or tmpfs the user asked for."""
    if mount.kind == "tmpfs":
        point = _mountpoint(root, mount.target, True)
        data = "mode=1777" + (f",size={mount.size}" if mount.size else "")
        flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if mount.read_only else 0)
        linux.mount("tmpfs", point, "tmpfs", flags, data)
        return
    point = _mountpoint(root, mount.target, os.path.isdir(mount.source))
    linux.mount(mount.source, point, None, MS_BIND | MS_REC)
    if mount.read_only:
        linux.mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def pivot_root(root: str) -> None:
    """Make `root` the namespace's `/` and detach the old root, so the host tree is gone."""
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount(".", MNT_DETACH)
    os.chdir("/")


def protect_paths() -> None:
    """Docker's masked paths (unreadable) and read-only paths, applied after pivot_root."""
    for path in MASKED_PATHS:
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError:
            continue
        if is_dir:
            linux.mount("tmpfs", path, "tmpfs", MS_RDONLY)
        else:
            linux.mount("/dev/null", path, None, MS_BIND)
    for path in READONLY_PATHS:
        if os.path.exists(path):
            linux.mount(path, path, None, MS_BIND | MS_REC)
            linux.mount(None, path, None,
                        MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
