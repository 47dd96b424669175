"""The cgroup v2 file mapping, on a directory tree shaped like a unified hierarchy.

This machine's unified hierarchy holds no memory, cpu or pids controller (they are on v1), so
the v2 limit and stat files are checked here as plain files: what is written where, and how
what the kernel reports is read back. The v2 freezer, kill and CPU time run on the real
unified hierarchy in test_cgroups.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_isobox.engine import EngineUnavailable
from pytest_isobox.native.cgroups import Limits, open_cgroup, parse_layout

LEAF_FILES = ("memory.max", "memory.swap.max", "cpu.max", "cpu.weight", "pids.max",
              "cgroup.procs")


def unified_tree(root: Path, controllers: str = "cpuset cpu io memory pids") -> Path:
    """A fake unified hierarchy with `isobox/c` already holding its (empty) control files."""
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    leaf = root / "isobox" / "c"
    leaf.mkdir(parents=True)
    (root / "isobox" / "cgroup.subtree_control").write_text("")
    for name in LEAF_FILES:
        (leaf / name).write_text("")
    return leaf


def cgroup_on(root: Path, name: str = "isobox/c"):
    mountinfo = f"28 24 0:26 / {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    layout = parse_layout(mountinfo, "", lambda mountpoint: (mountpoint /
                                                            "cgroup.controllers").read_text())
    return open_cgroup(name, layout=layout)


def test_limits_map_to_v2_files_and_controllers_are_delegated(tmp_path):
    leaf = unified_tree(tmp_path)
    cgroup_on(tmp_path).create(Limits(memory=64 << 20, cpus=1.5, cpu_shares=2048, pids=20))
    assert (leaf / "memory.max").read_text() == str(64 << 20)
    assert (leaf / "memory.swap.max").read_text() == "0"
    assert (leaf / "cpu.max").read_text() == "150000 100000"
    assert (leaf / "cpu.weight").read_text() == "174"
    assert (leaf / "pids.max").read_text() == "20"
    for level in (tmp_path, tmp_path / "isobox"):
        enabled = (level / "cgroup.subtree_control").read_text().split()
        assert sorted(enabled) == ["+cpu", "+memory", "+pids"]


def test_controllers_already_delegated_are_not_written_again(tmp_path):
    unified_tree(tmp_path)
    for level in (tmp_path, tmp_path / "isobox"):
        (level / "cgroup.subtree_control").write_text("cpu memory pids\n")
    cgroup_on(tmp_path).create(Limits(memory=1 << 20))
    assert (tmp_path / "cgroup.subtree_control").read_text() == "cpu memory pids\n"


def test_a_missing_v2_controller_is_named(tmp_path):
    unified_tree(tmp_path, controllers="cpu memory")
    with pytest.raises(EngineUnavailable, match=r"'pids'.*cgroup.controllers does not list it"):
        cgroup_on(tmp_path).create(Limits(pids=5))


def test_v2_stats_and_oom_kills_are_read_from_their_files(tmp_path):
    leaf = unified_tree(tmp_path)
    (leaf / "memory.current").write_text("1048576\n")
    (leaf / "memory.peak").write_text("4194304\n")
    (leaf / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
    (leaf / "pids.current").write_text("3\n")
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\n")
    cgroup = cgroup_on(tmp_path)
    stats = cgroup.stats()
    assert (stats.memory_current, stats.memory_peak, stats.cpu_time_ns, stats.pids) == \
        (1 << 20, 4 << 20, 2_500_000, 3)
    assert not cgroup.oom_killed()
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n")
    assert cgroup.oom_killed()


def test_peak_falls_back_to_current_before_linux_5_19(tmp_path):
    leaf = unified_tree(tmp_path)
    (leaf / "memory.current").write_text("8192\n")
    assert cgroup_on(tmp_path).stats().memory_peak == 8192
