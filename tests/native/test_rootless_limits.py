"""Which limits rootless containers get: a delegated cgroup v2 subtree or none (pure logic
on given mountinfo and /proc/self/cgroup, plus this machine's own answer)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_isobox.engine import EngineUnavailable, InvalidSpec
from pytest_isobox.native.cgroups.common import Limits
from pytest_isobox.native.rootless.limits import Delegation, find_delegation, plan_limits

V1_ONLY = "35 25 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
LIMITS = Limits(memory=256 * 1024**2, cpus=0.5, pids=64)


def test_no_v2_hierarchy_means_no_delegation() -> None:
    found = find_delegation(V1_ONLY, "4:memory:/user.slice\n", uid=1000)
    assert found.path is None and "cgroup v1 cannot be delegated" in found.reason


def test_strict_mode_refuses_limits_without_delegation_and_says_how_to_opt_in() -> None:
    none = Delegation(None, reason="no cgroup v2 hierarchy is mounted")
    with pytest.raises(EngineUnavailable) as info:
        plan_limits(LIMITS, "strict", none)
    message = str(info.value)
    assert "memory limit 268435456" in message and "cpus=0.5" in message
    assert "pids limit 64" in message and "--isobox-limits=best-effort" in message


def test_best_effort_runs_without_and_reports_what_was_skipped() -> None:
    plan = plan_limits(LIMITS, "best-effort", Delegation(None, reason="v1"))
    assert plan.applied == Limits()
    assert set(plan.skipped) == {"memory", "cpu", "pids"}
    assert plan.summary().startswith("no limits applied; skipped memory: memory limit")


def test_delegated_subtree_applies_what_its_controllers_allow(tmp_path: Path) -> None:
    plan = plan_limits(LIMITS, "best-effort",
                       Delegation(tmp_path, frozenset({"memory", "pids"})))
    assert plan.applied == Limits(memory=LIMITS.memory, pids=64)
    assert list(plan.skipped) == ["cpu"]
    with pytest.raises(EngineUnavailable, match="lacks the cpu controller"):
        plan_limits(LIMITS, "strict", Delegation(tmp_path, frozenset({"memory", "pids"})))


def test_no_limits_asked_is_always_fine() -> None:
    assert plan_limits(Limits(), "strict", Delegation(None, reason="v1")).skipped == {}


def test_delegation_found_only_in_a_cgroup_the_user_owns(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    own = mount / "user.slice" / "user-1000.slice" / "user@1000.service"
    own.mkdir(parents=True)
    (own / "cgroup.procs").touch()
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    mountinfo = f"36 25 0:31 / {mount} rw - cgroup2 cgroup2 rw\n"
    cgroup = "0::/user.slice/user-1000.slice/user@1000.service\n"
    mine = find_delegation(mountinfo, cgroup, uid=os.geteuid())
    assert mine.path == own and mine.controllers == {"cpu", "memory", "pids"}
    theirs = find_delegation(mountinfo, cgroup, uid=os.geteuid() + 1)
    assert theirs.path is None and "not delegated" in theirs.reason


def test_the_root_cgroup_is_no_delegation(tmp_path: Path) -> None:
    mountinfo = f"36 25 0:31 / {tmp_path} rw - cgroup2 cgroup2 rw\n"
    found = find_delegation(mountinfo, "0::/\n", uid=os.geteuid())
    assert found.path is None and "no delegated subtree" in found.reason


def test_bad_mode_is_named() -> None:
    with pytest.raises(InvalidSpec, match="'sometimes'"):
        plan_limits(LIMITS, "sometimes", Delegation(None))


def test_this_machine_has_no_delegation_for_users() -> None:
    """Hybrid cgroups here: v2 holds only hugetlb and nothing is delegated to other users."""
    found = find_delegation(uid=os.geteuid() + 12345)
    assert found.path is None
