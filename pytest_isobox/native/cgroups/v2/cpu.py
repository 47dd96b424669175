"""v2 cpu: cpu.max (`cpus`), cpu.weight (`cpu_shares`, converted as runc does) and CPU time."""

from __future__ import annotations

import math
from pathlib import Path

from pytest_isobox.native.cgroups.common import Controller, Limits, read_keyed, write_value

CFS_PERIOD_US = 100_000
SHARES_MIN, SHARES_MAX = 2, 262_144
WEIGHT_MAX = 10_000


def shares_to_weight(shares: int) -> int:
    """runc's conversion of v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000]: a curve
    through (2, 1), (1024, 100) and (262144, 10000), so Docker's default stays the default."""
    if shares <= SHARES_MIN:
        return 1
    if shares >= SHARES_MAX:
        return WEIGHT_MAX
    log = math.log2(shares)
    exponent = (log * log + 125 * log) / 612.0 - 7.0 / 34.0
    return math.ceil(10**exponent)


class Cpu(Controller):
    name = "cpu"

    def apply(self, path: Path, limits: Limits) -> None:
        if limits.cpus:
            write_value(path / "cpu.max", f"{round(limits.cpus * CFS_PERIOD_US)} {CFS_PERIOD_US}")
        if limits.cpu_shares:
            write_value(path / "cpu.weight", shares_to_weight(limits.cpu_shares))

    def stats(self, path: Path) -> dict[str, int]:
        """cpu.stat's usage_usec is kept by every v2 cgroup, cpu controller enabled or not."""
        usage = read_keyed(path / "cpu.stat").get("usage_usec")
        return {} if usage is None else {"cpu_time_ns": usage * 1000}
