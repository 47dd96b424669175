"""Who owns a Docker object we made, and the sweep of objects whose owner process died.

Every container, network and volume we create carries `io.isobox.owner=<host>:<pid>:<start>`
(the owner's start time tells a dead owner from a reused pid) and `io.isobox.session=<uuid>`.
The sweep removes only containers and networks that carry our owner label, name this host,
name a process that is gone, and are not labelled `io.isobox.persistent=1`: a live
concurrent run and anything we did not make are never touched.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pytest_isobox.engine import PERSISTENT_LABEL
from pytest_isobox.processes import ProcessIdentity

OWNER_LABEL = "io.isobox.owner"
SESSION_LABEL = "io.isobox.session"


@dataclass(frozen=True)
class Owner:
    host: str
    process: ProcessIdentity

    @classmethod
    def current(cls) -> Owner:
        return cls(socket.gethostname(), ProcessIdentity.current())

    @classmethod
    def parse(cls, label: str) -> Owner | None:
        """The owner named by a label value, or None when it is not ours to judge."""
        host, sep, token = label.rpartition(":")  # host names never hold ':' but be lenient
        host, sep2, pid = host.rpartition(":")
        process = ProcessIdentity.parse(f"{pid}:{token}") if sep and sep2 else None
        return cls(host, process) if process else None

    @property
    def label(self) -> str:
        return f"{self.host}:{self.process.token()}"

    def is_alive(self) -> bool:
        """True while the owning process runs (on another host we cannot tell: assume alive)."""
        return self.host != socket.gethostname() or self.process.alive()


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
