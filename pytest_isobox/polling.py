"""Waiting for fds to become readable with poll(2), not select(2): select cannot watch an fd
numbered 1024 or more, which a long pytest process (many engines, pidfds, sockets) reaches."""

from __future__ import annotations

import math
import select
from collections.abc import Iterable


def readable(fds: Iterable[int], timeout: float | None) -> list[int]:
    """The fds among `fds` ready to read (or hung up) within `timeout` seconds (None: wait)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN | select.POLLPRI)
    # rounded up: poll(2) takes whole ms, and one cut short (19 ms for 0.0199 s) wakes a
    # caller before its deadline, which then takes the wake-up for an event (wait's exit)
    ms = None if timeout is None else max(0, math.ceil(timeout * 1000))
    return [fd for fd, _ in poller.poll(ms)]
