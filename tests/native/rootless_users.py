"""Throwaway non-root users for the rootless tests, and running code as one of them.

`ThrowawayUser.create` adds `isobox-t<random>` with a home (and, as Debian's useradd does,
subordinate ids, removed again when the test wants none); `remove` ends the user's processes
by pid and deletes the user with its home, where all of its files live (its isobox home is
`~/.cache/isobox`). `run_as` forks this already loaded interpreter and drops the child to the
user for good (groups, gid, uid: no capability is left), because this Python lives under
/root, which other users cannot enter; so everything the child needs is imported here first.
`tun_open_to_users` lets the users' slirp4netns open /dev/net/tun for a while.
"""

from __future__ import annotations

import contextlib
import encodings.idna  # noqa: F401 - socket's lazy import, done before the fork
import fcntl
import functools
import os
import pwd
import secrets
import select
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

import pytest_isobox.images.store
import pytest_isobox.locks
import pytest_isobox.native.engine
import pytest_isobox.native.rootless.idmap
import pytest_isobox.native.rootless.userns  # noqa: F401 - loaded for the dropped child
from pytest_isobox.native import linux
from pytest_isobox.native.forked import call_in_child
from tests.conftest import BUSYBOX_ROOTFS_TOOL

PR_SET_DUMPABLE = 4
PREFIX = "isobox-t"
OWNER_FILE = ".isobox-test-owner"  # pid and start time of the process that made the user
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
TUN = Path("/dev/net/tun")
TUN_LOCK = Path("/run/isobox-tests-tun.lock")  # see tun_open_to_users


@dataclass
class ThrowawayUser:
    name: str
    uid: int
    gid: int
    home: Path
    subids: bool

    @classmethod
    def create(cls, subids: bool) -> ThrowawayUser:
        """A new user; first, the users of test runs that died before their finalizers."""
        remove_orphans()
        name = f"{PREFIX}{secrets.token_hex(4)}"
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True,
                       capture_output=True)
        entry = pwd.getpwnam(name)
        user = cls(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), subids)
        me = psutil.Process()
        (user.home / OWNER_FILE).write_text(f"{me.pid} {me.create_time()}\n")
        granted = _granted(name)
        if not subids and granted:
            args = []
            for flag, (start, count) in zip(("--del-subuids", "--del-subgids"), granted):
                args += [flag, f"{start}-{start + count - 1}"]
            subprocess.run(["usermod", *args, name], check=True, capture_output=True)
        elif subids and not granted:
            subprocess.run(["usermod", "--add-subuids", "300000-365535", "--add-subgids",
                            "300000-365535", name], check=True, capture_output=True)
        return user

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["uids"]):
            uids = proc.info["uids"]
            if uids and self.uid in (uids.real, uids.effective):
                found.append(proc)
        return found

    def remove(self) -> None:
        """End every process of the user by pid, then delete the user and its home."""
        for proc in self.processes():
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        psutil.wait_procs(self.processes(), timeout=10)
        subprocess.run(["userdel", "--remove", self.name], check=False, capture_output=True)


@contextlib.contextmanager
def throwaway_user(*, subids: bool, rootfs: bool = False) -> Iterator[ThrowawayUser]:
    """A user for the length of the block, removed after it even if the block fails; with
    rootfs, a busybox root filesystem owned by the user at `~/rootfs`."""
    made = ThrowawayUser.create(subids=subids)
    try:
        if rootfs:
            subprocess.run([str(BUSYBOX_ROOTFS_TOOL), str(made.home / "rootfs")], check=True,
                           capture_output=True)
            subprocess.run(["chown", "-R", f"{made.uid}:{made.gid}", str(made.home)], check=True)
        yield made
    finally:
        made.remove()


def remove_orphans() -> None:
    """Remove throwaway users whose creating process is gone (a run killed mid-test)."""
    for entry in pwd.getpwall():
        if not entry.pw_name.startswith(PREFIX):
            continue
        try:
            pid, started = (Path(entry.pw_dir) / OWNER_FILE).read_text().split()
            alive = psutil.Process(int(pid)).create_time() == float(started)
        except FileNotFoundError:  # being made right now, or made by a run long dead
            alive = _age(Path(entry.pw_dir)) < 60
        except (OSError, ValueError, psutil.NoSuchProcess):
            alive = False
        if not alive:
            ThrowawayUser(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir),
                          False).remove()


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _granted(name: str) -> list[tuple[int, int]] | None:
    ranges = []
    for path in SUBID_FILES:
        line = next((ln for ln in path.read_text().splitlines()
                     if ln.startswith(f"{name}:")), None)
        if line is None:
            return None
        _, start, count = line.split(":")
        ranges.append((int(start), int(count)))
    return ranges


def drop_to(user: ThrowawayUser) -> None:
    """Become the user for good in this (forked) process, as `setpriv --init-groups` does."""
    os.initgroups(user.name, user.gid)
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    linux.prctl(PR_SET_DUMPABLE, 1)  # as exec would: an id change left us undumpable
    os.environ.update(HOME=str(user.home), USER=user.name, LOGNAME=user.name)
    os.environ.pop("ISOBOX_HOME", None)
    os.environ.pop("XDG_CACHE_HOME", None)
    os.chdir(user.home)


def run_as(user: ThrowawayUser, func: Callable[..., Any], *args: Any) -> Any:
    """`func(*args)` in a child that is the user; its result, or its exception raised here
    (with the child's traceback as a note)."""
    return call_in_child(func, *args, prepare=functools.partial(drop_to, user))


def runtime_dir() -> Path:
    """Where a scenario run as a user keeps its namespace holder (in the user's home)."""
    return Path.home() / ".isobox-test-runtime"


def process_gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process `pid` (not necessarily our child) has ended within `timeout` seconds:
    a pidfd turns readable when it exits, so no polling of /proc."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


@contextlib.contextmanager
def tun_open_to_users() -> Iterator[None]:
    """/dev/net/tun usable by every user for the block, which slirp4netns needs (mode 0666,
    as udev makes it on most distributions; this VM's is 0600). Blocks of several test
    processes overlap: each holds a shared flock while inside, and the last one out (it gets
    the lock exclusively) puts back the mode recorded by the first one in."""
    fd = os.open(TUN_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not os.pread(fd, 16, 0):
            os.pwrite(fd, f"{stat.S_IMODE(TUN.stat().st_mode):o}".encode(), 0)
        os.chmod(TUN, 0o666)
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            yield
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # another block is still inside: it restores the mode
            else:
                os.chmod(TUN, int(os.pread(fd, 16, 0).decode(), 8))
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)
