"""v1 devices: Docker's default device rules, so a container cannot open host disks even
with CAP_MKNOD (any node may be created; only these may be opened)."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.native.cgroups.common import Controller, Limits, write_value

ALLOWED = (
    "c *:* m", "b *:* m",                                # mknod anything
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",               # null, zero, full
    "c 1:8 rwm", "c 1:9 rwm",                            # random, urandom
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",  # tty, console, ptmx, pts
    "c 10:200 rwm",                                      # net/tun
)


class Devices(Controller):
    """The rules go on each container's own cgroup. (Rules on the shared parent would be
    inherited, but a parent that gets a child while its rules are being written can take no
    more: each leaf writing its own is the race-free way.)"""

    name = "devices"

    def apply(self, path: Path, limits: Limits) -> None:
        write_value(path / "devices.deny", "a")
        for rule in ALLOWED + tuple(limits.devices):
            write_value(path / "devices.allow", rule)
