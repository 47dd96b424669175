"""Rootless mode of `NativeEngine`: everything the engine does differently without root.

The engine holds one `RootlessMode` (None when rootful) and asks it for its image store,
network manager, cgroups and limits, and to run file work in the user namespace. Opening
one checks, in this order, the kernel (`prerequisites`), the store's owner and id mapping
(`store`), then joins the home's user namespace, starting its holder if none runs (`userns`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pytest_isobox.native.cgroups.common import Cgroup, Limits
from pytest_isobox.native.rootless import check_mode, store
from pytest_isobox.native.rootless import mounts as rootless_mounts
from pytest_isobox.native.rootless.idmap import current_mapping
from pytest_isobox.native.rootless.images import NamespacedImageStore, open_store
from pytest_isobox.native.rootless.limits import (
    LimitsPlan,
    delegated_cgroup,
    find_delegation,
    plan_limits,
)
from pytest_isobox.native.rootless.networks import RootlessNetworkManager
from pytest_isobox.native.rootless.outbound import host_loopback_wanted
from pytest_isobox.native.rootless.prerequisites import check_rootless
from pytest_isobox.native.rootless.userns import UserNamespace

T = TypeVar("T")


class RootlessMode:
    """The user namespace, the limits policy and the store guard of one rootless engine."""

    def __init__(self, home: Path, limits: str = "strict") -> None:
        self.limits_mode = check_mode(limits)
        self.mapping = current_mapping()
        check_rootless(self.mapping)
        store.check_owner(home)
        store.claim(home, self.mapping)
        self.delegation = find_delegation()
        self.userns = UserNamespace(self.mapping, home / "runtime" / "rootless",
                                    host_loopback_wanted())
        self._inode = os.fstat(self.userns.user_fd).st_ino
        # what the start plan needs to know of the namespace, read once from its holder
        self.setgroups = rootless_mounts.setgroups_allowed(self.userns.pid)
        self.tty_gid_mapped = rootless_mounts.gid_mapped(rootless_mounts.TTY_GID,
                                                         self.userns.pid)

    @property
    def note(self) -> str:
        """What the id mapping limits (empty with subordinate ids)."""
        return self.mapping.note

    @property
    def outbound_note(self) -> str:
        """Why containers have no outbound network (empty when they have it)."""
        return self.userns.outbound

    def inside(self) -> bool:
        """Whether this process already entered the namespace (a monitor, a `run` child)."""
        return os.stat("/proc/self/ns/user").st_ino == self._inode

    def enter(self) -> None:
        """Enter the namespace in a forked process that may outlive this engine (a monitor):
        it keeps the holder alive with a connection of its own."""
        self.userns.enter(pin=True)

    def shim_namespace(self) -> tuple[int, socket.socket]:
        """For a container's shim: the user namespace's fd (the shim enters it before its pid
        namespace) and a new connection that keeps the holder alive while the shim runs."""
        return self.userns.user_fd, self.userns.pin()

    def fds(self) -> set[int]:
        """The descriptors a forked helper must keep to use the namespaces."""
        return self.userns.fds()

    def run(self, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` as root in the namespace (directly when already inside)."""
        return func(*args) if self.inside() else self.userns.run(func, *args)

    def image_store(self, home: Path) -> NamespacedImageStore:
        return open_store(home, self.userns)

    def network_manager(self, home: Path) -> RootlessNetworkManager:
        return RootlessNetworkManager(home, self.userns)

    def plan_limits(self, limits: Limits) -> LimitsPlan:
        """What of `limits` applies; EngineUnavailable in strict mode when something cannot."""
        return plan_limits(limits, self.limits_mode, self.delegation)

    def cgroup(self, name: str) -> Cgroup:
        """The container's cgroup: in the delegated subtree when there is one, else none."""
        return delegated_cgroup(self.delegation, name)

    def close(self) -> None:
        self.userns.close()
