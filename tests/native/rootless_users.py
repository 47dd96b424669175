"""Throwaway non-root users for the rootless tests, and running code as one of them.

`ThrowawayUser.create` adds `isobox-t<random>` with a home (and, as Debian's useradd does,
subordinate ids, removed again when the test wants none); `remove` ends the user's processes
by pid and deletes the user with its home, where all of its files live (its isobox home is
`~/.cache/isobox`). `run_as` forks this already loaded interpreter and drops the child to the
user for good (groups, gid, uid: no capability is left), because this Python lives under
/root, which other users cannot enter; so everything the child needs is imported here first.
"""

from __future__ import annotations

import contextlib
import encodings.idna  # noqa: F401 - socket's lazy import, done before the fork
import os
import pickle
import pwd
import secrets
import signal
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock  # noqa: F401 - imported before the fork: the user cannot read /root
import psutil
import pyroute2  # noqa: F401

import pytest_isobox.images.store
import pytest_isobox.native.engine
import pytest_isobox.native.rootless.idmap
import pytest_isobox.native.rootless.userns  # noqa: F401 - loaded for the dropped child
from pytest_isobox.native import linux
from tests.conftest import BUSYBOX_ROOTFS_TOOL

PR_SET_DUMPABLE = 4
PREFIX = "isobox-t"
OWNER_FILE = ".isobox-test-owner"  # pid and start time of the process that made the user
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))


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
    """`func(*args)` in a child that is the user; its result or its error (with traceback)."""
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(result_r)
            try:
                drop_to(user)
                payload = pickle.dumps((True, func(*args)))
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                failure = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
                payload = pickle.dumps((False, failure))
            with open(result_w, "wb") as out:  # sized: descendants may hold the pipe open
                out.write(len(payload).to_bytes(8, "big") + payload)
            code = 0
        finally:
            os._exit(code)
    os.close(result_w)
    with open(result_r, "rb") as source:
        size = int.from_bytes(source.read(8) or b"\0", "big")
        data = source.read(size) if size else b""
    os.waitpid(pid, 0)
    if not data:
        raise AssertionError(f"the child running {func.__name__} as {user.name} died")
    ok, value = pickle.loads(data)
    if not ok:
        raise AssertionError(f"as {user.name}: {value}")
    return value
