"""Which limits rootless containers get: a delegated cgroup v2 subtree or none (pure logic
on given mountinfo and /proc/self/cgroup, this machine's own answer, and the files written
in a fake delegated cgroup2 tree by a uid that owns only the delegated part)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.engine import EngineUnavailable, InvalidSpec
from pytest_isobox.native.cgroups.common import Limits
from pytest_isobox.native.forked import call_in_child
from pytest_isobox.native.rootless.limits import (
    Delegation,
    NoCgroup,
    delegated_cgroup,
    find_delegation,
    plan_limits,
)

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


# ------------------------------------------------ a delegated subtree, on a fake cgroup2 tree
# This machine's cgroup v2 holds only hugetlb and delegates nothing, so the delegated case is
# checked on a directory tree laid out as systemd leaves it (root-owned ancestors, the user's
# own user@UID.service and below), with the control files the kernel would show. What is
# written is written for real, by a process of a uid that owns only the delegated part.

DELEGATE_UID = 4242  # no such user needed: only the files' owner and the writer's uid count
ROOT_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc"


@pytest.fixture
def fake_unified() -> Iterator[Path]:
    """A world-traversable directory (pytest's tmp_path is not, for another uid)."""
    root = Path(tempfile.mkdtemp(prefix="isobox-fake-cgroup2-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def _cgroup_dir(path: Path, controllers: str, enabled: str = "", procs: str = "",
                owner: int = 0) -> Path:
    """A cgroup directory with the control files the kernel would make, owned by `owner`
    where systemd's delegation makes them so (the directory, procs, subtree_control)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "cgroup.controllers").write_text(controllers + "\n")
    (path / "cgroup.subtree_control").write_text(enabled)
    (path / "cgroup.procs").write_text(procs)
    for name in ("memory.max", "memory.swap.max", "cpu.max", "cpu.weight", "pids.max"):
        (path / name).write_text("")
    for owned in (path, path / "cgroup.procs", path / "cgroup.subtree_control",
                  *(path / n for n in ("memory.max", "memory.swap.max", "cpu.max",
                                       "cpu.weight", "pids.max"))):
        os.chown(owned, owner, owner)
    return path


def delegated_tree(root: Path, delegated: str = "memory pids", top_procs: str = "",
                   ) -> tuple[str, str, Path]:
    """mountinfo, /proc/self/cgroup and the delegated top (user@UID.service) of a tree where
    this process sits in app.slice/run-1.scope of the user's delegated subtree."""
    uid = DELEGATE_UID
    _cgroup_dir(root, ROOT_CONTROLLERS, "+cpu +memory +pids")
    _cgroup_dir(root / "user.slice", "cpu memory pids", "+cpu +memory +pids")
    _cgroup_dir(root / f"user.slice/user-{uid}.slice", "cpu memory pids", "+memory +pids")
    top = _cgroup_dir(root / f"user.slice/user-{uid}.slice/user@{uid}.service", delegated,
                      procs=top_procs, owner=uid)
    _cgroup_dir(top / "app.slice", delegated, owner=uid)
    _cgroup_dir(top / "app.slice/run-1.scope", delegated, procs="1234\n", owner=uid)
    mountinfo = f"36 25 0:31 / {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    cgroup = f"0::/user.slice/user-{uid}.slice/user@{uid}.service/app.slice/run-1.scope\n"
    return mountinfo, cgroup, top


def test_the_delegation_is_the_top_of_the_users_subtree(fake_unified: Path) -> None:
    mountinfo, cgroup, top = delegated_tree(fake_unified, delegated="cpu memory pids io")
    found = find_delegation(mountinfo, cgroup, uid=DELEGATE_UID)
    assert found.path == top  # not run-1.scope, which holds this process
    assert found.controllers == {"cpu", "memory", "pids"}  # (io is none of ours)
    assert find_delegation(mountinfo, cgroup, uid=DELEGATE_UID + 1).path is None


def test_a_delegated_top_holding_processes_is_no_delegation(fake_unified: Path) -> None:
    mountinfo, cgroup, top = delegated_tree(fake_unified, top_procs="77\n")
    found = find_delegation(mountinfo, cgroup, uid=DELEGATE_UID)
    assert found.path is None
    assert f"{top} holds processes itself" in found.reason


def _create_as_delegate(delegation: Delegation, limits: Limits) -> None:
    """Make the container cgroup as the delegated uid, and put a process into it."""
    cgroup = delegated_cgroup(delegation, "isobox/c")
    cgroup.create(limits)
    cgroup.add(4321)


def _become_delegate() -> None:
    os.setgroups([])
    os.setresgid(DELEGATE_UID, DELEGATE_UID, DELEGATE_UID)
    os.setresuid(DELEGATE_UID, DELEGATE_UID, DELEGATE_UID)


def test_limits_are_written_inside_the_delegation_only(fake_unified: Path) -> None:
    mountinfo, cgroup, top = delegated_tree(fake_unified, delegated="memory pids")
    delegation = find_delegation(mountinfo, cgroup, uid=DELEGATE_UID)
    plan = plan_limits(LIMITS, "best-effort", delegation)
    assert plan.applied == Limits(memory=LIMITS.memory, pids=64) and list(plan.skipped) == ["cpu"]
    assert plan.summary() == ("applied memory limit 268435456, pids limit 64; skipped cpu: "
                              "cpus=0.5 (rootless, no delegated cgroup)")
    _cgroup_dir(top / "isobox", "memory pids", owner=DELEGATE_UID)  # what mkdir would show
    leaf = _cgroup_dir(top / "isobox" / "c", "memory pids", owner=DELEGATE_UID)
    above = {p: p.read_text() for p in fake_unified.rglob("cgroup.subtree_control")
             if top not in p.parents}
    call_in_child(_create_as_delegate, delegation, plan.applied, prepare=_become_delegate)
    assert sorted((top / "cgroup.subtree_control").read_text().split()) == ["+memory", "+pids"]
    assert sorted((top / "isobox/cgroup.subtree_control").read_text().split()) == \
        ["+memory", "+pids"]
    assert (leaf / "memory.max").read_text() == str(LIMITS.memory)
    assert (leaf / "pids.max").read_text() == "64"
    assert (leaf / "cpu.max").read_text() == ""  # cpu was not delegated: left alone
    assert (leaf / "cgroup.procs").read_text() == "4321"
    assert {p: p.read_text() for p in above} == above  # nothing above the delegation changed


def test_without_a_usable_delegation_a_container_has_no_cgroup() -> None:
    assert isinstance(delegated_cgroup(Delegation(None, reason="v1"), "isobox/c"), NoCgroup)
