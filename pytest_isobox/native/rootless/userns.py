"""The user namespace rootless containers live in, held by a small keeper process.

`UserNamespace` forks a keeper that unshares a user namespace, has its id maps written
(newuidmap/newgidmap for subordinate ids, or the single-id map written directly), and then
makes a network namespace owned by it: the helper namespace where the bridges of rootless
networks live (forwarding off, so bridges never route to each other). The keeper does nothing else; it dies with the process that made it
(PR_SET_PDEATHSIG) and the namespaces die when no process is left in them.

Joining is cheap (setns, no exec): every container's monitor, every exec and every file
operation on container or layer trees (`run`) enters the same namespace as root, so ids
inside mean the same everywhere and one process can wire containers together.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
from collections.abc import Callable
from typing import Any, Self, TypeVar

from pytest_isobox.engine import EngineUnavailable, IsoboxError
from pytest_isobox.native import linux
from pytest_isobox.native.rootless.idmap import IdMapping

T = TypeVar("T")


def is_rootless(force: bool | None = None) -> bool:
    """Rootless unless root: euid != 0, or `force` (True/False) says otherwise."""
    return os.geteuid() != 0 if force is None else force


def write_id_maps(pid: int, mapping: IdMapping) -> None:
    """Give the user namespace of `pid` its uid and gid maps (done once, from outside).

    Subordinate ranges go through the setuid helpers newuidmap/newgidmap (Debian's uidmap),
    which check them against /etc/subuid and /etc/subgid. A single-id map is written directly:
    the kernel allows mapping one's own id after setgroups is denied.
    """
    if mapping.single:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(mapping.uids[0].line())
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(mapping.gids[0].line())
        return
    for tool, ranges in (("newuidmap", mapping.uids), ("newgidmap", mapping.gids)):
        path = shutil.which(tool)
        if path is None:
            raise EngineUnavailable(f"rootless containers with subordinate ids need {tool} "
                                    "(Debian: apt-get install uidmap)")
        args = [str(n) for r in ranges for n in (r.inside, r.outside, r.count)]
        done = subprocess.run([path, str(pid), *args], check=False, capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise EngineUnavailable(f"{tool} {pid} {' '.join(args)} failed: "
                                    f"{done.stderr.strip() or done.returncode}")


def _stop_forwarding() -> None:
    """No routing between the helper namespace's bridges: networks stay apart. (A new
    network namespace copies the host's IPv4 forwarding switch, which dockerd turns on.)"""
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("0")


def close_fds_but(keep: set[int]) -> None:
    """Close every fd of this (forked) process but `keep`."""
    low = 3
    for fd in sorted(f for f in keep if f >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


class UserNamespace:
    """A user namespace with `mapping` and a helper network namespace owned by it."""

    def __init__(self, mapping: IdMapping) -> None:
        self.mapping = mapping
        to_keeper_r, to_keeper_w = os.pipe()
        from_keeper_r, from_keeper_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the keeper: never returns
            code = 1
            try:
                close_fds_but({to_keeper_r, from_keeper_w})
                linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                linux.unshare(linux.CLONE_NEWUSER)
                os.write(from_keeper_w, b"u")
                if os.read(to_keeper_r, 1) == b"m":
                    linux.unshare(linux.CLONE_NEWNET)
                    linux.interface_up("lo")
                    _stop_forwarding()
                    os.write(from_keeper_w, b"n")
                    os.read(to_keeper_r, 1)  # until the maker closes its end, or dies
                code = 0
            finally:
                os._exit(code)
        os.close(to_keeper_r)
        os.close(from_keeper_w)
        self.pid = pid
        self._maker = os.getpid()
        self._control = to_keeper_w
        self.user_fd = self.net_fd = -1
        try:
            if os.read(from_keeper_r, 1) != b"u":
                raise EngineUnavailable(
                    "cannot create a user namespace (unshare(CLONE_NEWUSER) failed: see "
                    "user.max_user_namespaces and, on Ubuntu, "
                    "kernel.apparmor_restrict_unprivileged_userns)")
            write_id_maps(pid, mapping)
            os.write(to_keeper_w, b"m")
            if os.read(from_keeper_r, 1) != b"n":
                raise EngineUnavailable("cannot create a network namespace in the user namespace")
            self.user_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            self.net_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise
        finally:
            os.close(from_keeper_r)

    def enter(self) -> None:
        """Make the calling (single-threaded, forked) process root in the namespace.

        A forked process may have closed the maker's descriptors (a monitor closes all it
        does not need), so it opens its own, by the keeper's pid: the keeper is the maker's
        unreaped child while the maker lives, so its pid cannot name another process.
        """
        if os.getpid() != self._maker:
            self.user_fd = os.open(f"/proc/{self.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            self.net_fd = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            self._control = -1
            self._maker = os.getpid()
        linux.setns(self.user_fd, linux.CLONE_NEWUSER)

    def enter_helper_net(self) -> None:
        """Move the calling thread into the helper network namespace (after `enter`)."""
        linux.setns(self.net_fd, linux.CLONE_NEWNET)

    def run(self, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` in a forked child that entered the namespace as root; its result
        (or its exception) comes back pickled. For file work on trees owned by mapped ids."""
        result_r, result_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(result_r)
                linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
                try:
                    self.enter()
                    payload = pickle.dumps((True, func(*args)))
                except BaseException as exc:  # noqa: BLE001 - sent back to the caller
                    payload = pickle.dumps((False, _picklable(exc)))
                with open(result_w, "wb", closefd=False) as out:  # sized: `func` may have
                    out.write(len(payload).to_bytes(8, "big") + payload)  # forked holders
                code = 0
            finally:
                os._exit(code)
        os.close(result_w)
        with open(result_r, "rb") as source:
            size = int.from_bytes(source.read(8) or b"\0", "big")
            data = source.read(size) if size else b""
        os.waitpid(pid, 0)
        if not data:
            raise IsoboxError(f"{getattr(func, '__name__', func)} died in the user namespace")
        ok, value = pickle.loads(data)
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """End the keeper (by its pid) and reap it; namespaces live on while containers do."""
        for fd in (self.user_fd, self.net_fd, self._control):
            if fd >= 0:
                os.close(fd)
        self.user_fd = self.net_fd = self._control = -1
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.pid = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - fall back to the message
        return IsoboxError(f"{type(exc).__name__}: {exc}")
