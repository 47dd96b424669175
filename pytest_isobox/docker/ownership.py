"""Who owns a Docker object we made, and the sweep of objects whose owner process died.

Every container, network and volume we create carries `io.isobox.owner=<host>:<pid>:<start>`
(the owner's start time tells a dead owner from a reused pid) and `io.isobox.session=<uuid>`.
The sweep removes only containers and networks that carry our owner label, name this host,
name a process that is gone, and are not labelled `io.isobox.persistent=1`: a live
concurrent run and anything we did not make are never touched.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import psutil

from pytest_isobox.engine import PERSISTENT_LABEL

OWNER_LABEL = "io.isobox.owner"
SESSION_LABEL = "io.isobox.session"

_START_TIME_TOLERANCE = 0.05  # seconds; psutil derives start times from clock ticks


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start_time: float

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, psutil.Process(pid).create_time())

    @classmethod
    def parse(cls, label: str) -> Owner | None:
        """The owner named by a label value, or None when it is not ours to judge."""
        host, sep, rest = label.rpartition(":")  # host names never hold ':' but be lenient
        host, sep2, pid = host.rpartition(":")
        try:
            return cls(host, int(pid), float(rest)) if sep and sep2 else None
        except ValueError:
            return None

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}:{self.start_time:.2f}"

    def is_alive(self) -> bool:
        """True while the owning process runs (on another host we cannot tell: assume alive)."""
        if self.host != socket.gethostname():
            return True
        try:
            process = psutil.Process(self.pid)
            started = process.create_time()
            if process.status() == psutil.STATUS_ZOMBIE:  # dead, only not reaped yet
                return False
        except psutil.NoSuchProcess:
            return False
        return abs(started - self.start_time) < _START_TIME_TOLERANCE


def ownership_labels(owner: Owner, session: str, *, persistent: bool = False) -> dict[str, str]:
    labels = {OWNER_LABEL: owner.label, SESSION_LABEL: session}
    if persistent:
        labels[PERSISTENT_LABEL] = "1"
    return labels


def is_orphan(labels: dict[str, str] | None) -> bool:
    """True for an object we made, not persistent, whose owner on this host is dead."""
    labels = labels or {}
    if labels.get(PERSISTENT_LABEL) == "1" or OWNER_LABEL not in labels:
        return False
    owner = Owner.parse(labels[OWNER_LABEL])
    return owner is not None and owner.host == socket.gethostname() and not owner.is_alive()
