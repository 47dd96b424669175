"""v1 devices: Docker's default device rules, so a container cannot open host disks even
with CAP_MKNOD (any node may be created; only these may be opened)."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.native.cgroups.common import Controller, read_value, write_value

ALLOWED = (
    "c *:* m", "b *:* m",                                # mknod anything
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",               # null, zero, full
    "c 1:8 rwm", "c 1:9 rwm",                            # random, urandom
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",  # tty, console, ptmx, pts
    "c 10:200 rwm",                                      # net/tun
)


class Devices(Controller):
    """The rules go on every new level, our shared parent included: a v1 devices cgroup
    starts with a copy of its parent's rules, so a container's own cgroup needs no writes."""

    name = "devices"
    inherited = True

    def prepared(self, path: Path) -> bool:
        return "a *:* rwm" not in read_value(path / "devices.list").splitlines()

    def prepare(self, path: Path) -> None:
        write_value(path / "devices.deny", "a")
        for rule in ALLOWED:
            write_value(path / "devices.allow", rule)
