"""v1 cpu: the CFS quota (`cpus`) and the relative weight (`cpu_shares`)."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.native.cgroups.common import Controller, Limits, write_value

CFS_PERIOD_US = 100_000


class Cpu(Controller):
    name = "cpu"

    def apply(self, path: Path, limits: Limits) -> None:
        """cpus=0.5 is 50 ms of CPU time per 100 ms period, as Docker sets it."""
        if limits.cpus:
            write_value(path / "cpu.cfs_period_us", CFS_PERIOD_US)
            write_value(path / "cpu.cfs_quota_us", round(limits.cpus * CFS_PERIOD_US))
        if limits.cpu_shares:
            write_value(path / "cpu.shares", limits.cpu_shares)
