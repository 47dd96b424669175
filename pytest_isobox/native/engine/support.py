"""What the native engine's roles share: constants and small helpers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_isobox.polling import readable

if TYPE_CHECKING:
    from pytest_isobox.native import shim

NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
LOCALHOST_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
              "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
              "ff02::2\tip6-allrouters\n")
FALLBACK_DNS = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"  # Docker's, when the host has none
TINI_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/bin/tini")
STOP_GRACE = 10.0  # seconds to wait after SIGKILL for the monitor to record the exit
POOL_MAX = 8  # shims spawned ahead at most (each: two sleeping processes and empty cgroups)
POOL_BURST = 1.0  # s: a pool emptied again this soon doubles the next batch
POOL_QUIET = 10.0  # s: a pool emptied after this long starts again from one
def send_signal(pidfd: int, number: int) -> None:
    signal.pidfd_send_signal(pidfd, number)
def tree_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
def collect_ready(buffers: dict[int, bytearray]) -> dict[int, bytearray]:
    """Read every fd to its end (they close when the writer exits)."""
    open_fds = set(buffers)
    while open_fds:
        for fd in readable(open_fds, None):
            chunk = os.read(fd, 65536)
            if chunk:
                buffers[fd] += chunk
            else:
                open_fds.discard(fd)
                os.close(fd)
    return buffers
def read_to_end(fd: int) -> bytes:
    data = bytearray()
    while chunk := os.read(fd, 65536):
        data += chunk
    return bytes(data)


class ShimSpare:
    """A shim spawned ahead for container `cid`, its process already in the cgroup."""

    def __init__(self, cid: str, handle: shim.ShimHandle, cgroup: Any) -> None:
        self.cid, self.handle, self.cgroup = cid, handle, cgroup

    def discard(self) -> None:
        self.handle.discard()
        with contextlib.suppress(Exception):
            if not self.cgroup.procs():
                self.cgroup.destroy()
