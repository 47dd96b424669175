"""What every cgroup version shares: the limits, the stats, the interface and the file access.

Callers see only `Limits`, `CgroupStats` and `Cgroup`; whether a controller lives on cgroup
v1 or v2 never leaks out of this package (youki's libcgroups `common.rs` plays this role).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from pytest_isobox.engine import ContainerError, EngineUnavailable, InvalidSpec
from pytest_isobox.engine.records import FrozenRecord, Record, record

MIN_CPUS = 0.01  # the smallest CFS quota the kernel takes is 1 ms per 100 ms period


@record
class Limits(FrozenRecord):
    """Resource limits of one cgroup, as Docker's flags give them; None or 0 means no limit.

    memory is bytes (swap cannot exceed it), cpus a fraction of cores (`--cpus 0.5`),
    cpu_shares Docker's relative weight (default 1024), pids the most tasks at once.
    devices are device rules allowed beyond Docker's defaults (`c 1:11 rw`; `a` for all, as
    --privileged), from --device.
    """

    memory: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    pids: int | None = None
    devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field_name in ("memory", "cpus", "cpu_shares"):
            value = getattr(self, field_name)
            if value is not None and value < 0:
                raise InvalidSpec(f"invalid {field_name}={value!r}: must not be negative")
        if self.cpus and self.cpus < MIN_CPUS:
            raise InvalidSpec(f"invalid cpus={self.cpus!r}: the smallest CPU quota is {MIN_CPUS}")

    def controllers(self) -> dict[str, str]:
        """The controllers these limits need, each with the limit that needs it."""
        needed: dict[str, str] = {}
        if self.memory:
            needed["memory"] = f"memory limit {self.memory}"
        if self.cpus:
            needed["cpu"] = f"cpus={self.cpus}"
        elif self.cpu_shares:
            needed["cpu"] = f"cpu_shares={self.cpu_shares}"
        if self.pids and self.pids > 0:
            needed["pids"] = f"pids limit {self.pids}"
        if self.devices:
            needed["devices"] = f"device rules {', '.join(self.devices)}"
        return needed


@record
class CgroupStats(Record):
    """Usage of one cgroup: bytes of memory now and at most, CPU nanoseconds, live tasks."""

    memory_current: int
    memory_peak: int
    cpu_time_ns: int
    pids: int


class Cgroup(Protocol):
    """One container's cgroup across every hierarchy it needs.

    `name` is relative to each hierarchy's root, e.g. `isobox/<container id>`.
    """

    name: str

    def create(self, limits: Limits) -> None:
        """Make the cgroup and write its limits; EngineUnavailable names a missing controller."""
    def add(self, pid: int) -> None:
        """Move a process (and so its future children) into the cgroup in every hierarchy;
        pid 0 moves the calling process."""
    def procs(self) -> list[int]:
        """The processes in the cgroup now."""
    def stats(self) -> CgroupStats:
        """Current usage; 0 for what no mounted controller measures."""
    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this cgroup."""
    def kill_all(self) -> None:
        """SIGKILL every process, including ones forking meanwhile; returns once it is empty."""
    def destroy(self) -> None:
        """kill_all, then remove the cgroup everywhere; idempotent, no error if absent."""
    def exists(self) -> bool:
        """Whether the cgroup exists in any hierarchy."""


class Controller:
    """One controller's files in a cgroup directory, for one cgroup version.

    `prepare` runs on each new directory from the top down, before tasks can join (v1 cpuset
    needs its cpus and mems filled); `apply` writes limits; `stats` reads what it measures.
    """

    name = ""
    inherited = False  # True: a child of a prepared directory is born prepared (v1 only)

    def prepare(self, path: Path) -> None:
        """Make a new directory usable; nothing to do for most controllers."""

    def prepared(self, path: Path) -> bool:
        """Whether a new directory is usable as it is (`inherited` controllers only)."""
        return False

    def apply(self, path: Path, limits: Limits) -> None:
        """Write this controller's part of `limits`; nothing for controllers without limits."""

    def stats(self, path: Path) -> dict[str, int]:
        """This controller's part of `CgroupStats`, by field name."""
        return {}


def polling(timeout: float) -> Iterator[None]:
    """Yield until `timeout` seconds have passed, sleeping between rounds from 0.5 ms doubling
    up to 50 ms: the wait on a kernel condition that has no notification to wait on."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        yield
        if time.monotonic() >= deadline:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


# --------------------------------------------------------------------------- file access

VANISHED = (errno.ENOENT, errno.ENODEV)  # the cgroup directory is gone or being removed


def vanished(exc: OSError) -> bool:
    """Whether an error means the cgroup directory itself went away (a concurrent rmdir)."""
    return exc.errno in VANISHED


def write_value(path: Path, value: str | int) -> None:
    """Write one value to a cgroup file in one write(2), as the kernel expects.

    A missing file in an existing cgroup means the kernel lacks that feature: EngineUnavailable
    names it. A vanished cgroup directory raises the OSError itself (see `vanished`). A refused
    value raises ContainerError naming the file and the value.
    """
    data = str(value).encode()
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            break
        except OSError as exc:
            if vanished(exc) and not path.parent.is_dir():
                raise
            if exc.errno == errno.ENOENT and attempt == 0:
                continue  # the directory may have been removed and made again meanwhile
            if exc.errno == errno.ENOENT:
                raise EngineUnavailable(
                    f"cgroup file {path} does not exist: this kernel lacks it") from None
            raise ContainerError(f"cannot open cgroup file {path}: {exc.strerror}") from None
    try:
        os.write(fd, data)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise
        raise ContainerError(f"cannot write {str(value)!r} to {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_value(path: Path) -> str:
    """The content of a cgroup file, stripped."""
    with open(path, "rb") as f:
        return f.read().decode().strip()


def read_int(path: Path, default: int = 0) -> int:
    """A cgroup file holding one number; `default` when the file is missing."""
    try:
        return int(read_value(path))
    except FileNotFoundError:
        return default


def read_keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file (`key value` per line), e.g. memory.events or cpu.stat."""
    try:
        lines = read_value(path).splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split() for line in lines)
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


def read_pids(path: Path) -> list[int]:
    """The pids in a cgroup directory's cgroup.procs; empty when the directory is gone."""
    try:
        return [int(line) for line in read_value(path / "cgroup.procs").split()]
    except FileNotFoundError:
        return []


def child_names(path: Path) -> set[str]:
    """Names of the child cgroups of a cgroup directory; empty when it does not exist."""
    try:
        return {entry.name for entry in os.scandir(path) if entry.is_dir(follow_symlinks=False)}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def make_dir(path: Path) -> bool:
    """mkdir that tolerates an existing directory; True when this call created it.

    Without permission (not root, no delegated subtree) it raises EngineUnavailable.
    """
    try:
        os.mkdir(path)
    except FileExistsError:
        return False
    except PermissionError:
        raise EngineUnavailable(
            f"no permission to create cgroup {path}: resource limits need root, or a "
            "delegated cgroup v2 subtree") from None
    return True


def remove_dir(path: Path) -> bool:
    """rmdir a cgroup; True when it is gone, False when it is busy (still has tasks or children).

    A cgroup that just emptied can be busy for a moment; the caller decides whether to retry.
    """
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise ContainerError(f"cannot remove cgroup {path}: {exc.strerror}") from None
    return True


def cgroup_ancestors(directory: Path, name: str) -> list[Path]:
    """The directories of `name`'s ancestors inside its hierarchy, nearest first
    (`<mount>/isobox` for `<mount>/isobox/<id>`), never the hierarchy's root."""
    return list(directory.parents)[: name.count("/")]


def prune_empty_ancestors(directory: Path, name: str) -> None:
    """rmdir the ancestors that the removal of `directory` left empty, nearest first, stopping
    at the first that is still in use (or not ours to remove)."""
    for level in cgroup_ancestors(directory, name):
        try:
            os.rmdir(level)
        except FileNotFoundError:
            continue
        except OSError:
            return
