"""`isobox system check` and `system check --prune`: the leak check as a product feature, on the real
host: a live run's containers are seen, a run that died leaves state the check names and the
prune removes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pytest_isobox import hostcheck
from tests.conftest import needs_root, system_check
from tests.native.test_engine import start_owner


def isobox(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_isobox.cli", *args],
                          capture_output=True, text=True, check=False)


def test_diff_reports_only_new_lines() -> None:
    assert hostcheck.diff(["a", "b", "c"], ["b", "z"]) == ["a", "c"]


def test_a_missing_baseline_is_one_clear_line(tmp_path: Path) -> None:
    proc = system_check("--baseline", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"isobox: cannot read the baseline {tmp_path / 'nope'}: "
                                   "No such file or directory")


def _wait_until(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@needs_root
def test_a_live_run_is_seen_and_a_dead_ones_state_is_pruned(isobox_home: Path,
                                                            busybox_rootfs: Path,
                                                            tmp_path: Path) -> None:
    baseline = tmp_path / "baseline"
    assert system_check("--save", str(baseline)).returncode == 0
    owner, ids = start_owner(isobox_home, busybox_rootfs, "owned")
    try:
        found = system_check("--baseline", str(baseline), "--json")
        assert found.returncode == 1
        lines = json.loads(found.stdout)
        for cid in ids:  # each container: its cgroups and its processes, inside and out
            assert any(line.startswith("cgroup ") and cid in line for line in lines), lines
        assert any(line.startswith("process isobox-") for line in lines), lines
        assert any(" in a container " in line and line.startswith("process sleep")
                   for line in lines), lines
        # A run that died with its monitors (kill -9 of all, nothing could clean up):
        # the containers' state stays until a sweep.
        monitors = [p for p in psutil.Process(owner.pid).children(recursive=True)
                    if p.name().startswith("isobox-")]
        assert monitors
        made = {line for line in lines if line.startswith("cgroup ")}  # spares' too
        for process in [*monitors, psutil.Process(owner.pid)]:  # (its reaper among them)
            process.send_signal(signal.SIGKILL)
        owner.wait()
        check = isobox("--home", str(isobox_home), "system", "check", "--baseline",
                       str(baseline))
        assert check.returncode == 1
        assert all(f"state {isobox_home / 'containers' / cid} (owner pid {owner.pid} is gone)"
                   in check.stdout for cid in ids), check.stdout
        pruned = isobox("--home", str(isobox_home), "system", "check", "--prune")
        assert pruned.returncode == 0, pruned.stderr
        assert "removed " in pruned.stdout

        def ours_left() -> list[str]:  # other runs may share this host: this test's things
            out = isobox("--home", str(isobox_home), "system", "check", "--baseline",
                         str(baseline), "--json").stdout
            return [line for line in json.loads(out or "[]") if any(c in line for c in ids)
                    or line in made or line.startswith(("process isobox-", "process sleep"))]

        def pruned_all() -> bool:  # empty cgroups of no container go once a few seconds old
            isobox("--home", str(isobox_home), "system", "check", "--prune")
            return not ours_left()

        _wait_until(pruned_all, "the prune left something behind")
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        isobox("--home", str(isobox_home), "system", "check", "--prune")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_check_opens_no_engine(tmp_path: Path) -> None:
    """A read of the host only: no home is made, nothing swept."""
    home = tmp_path / "never-made"
    proc = isobox("--home", str(home), "system", "check", "--save", str(tmp_path / "s"))
    assert proc.returncode == 0 and not home.exists()


def _dead_identity():
    """The identity of a process that ran and is gone (its pid may be reused: its start not)."""
    from pytest_isobox.processes import ProcessIdentity

    proc = subprocess.Popen(["sleep", "60"])
    identity = ProcessIdentity.of(proc.pid)
    proc.kill()
    proc.wait()
    assert identity is not None and not identity.alive()
    return identity


@needs_root
def test_a_dead_owners_temp_names_heredoc_and_rootfs_dirs_are_named_and_pruned(
        isobox_home: Path, tmp_path: Path) -> None:
    import tempfile

    from pytest_isobox.native.engine import NativeEngine

    NativeEngine(home=isobox_home).close()  # the layout (tmp/, containers/)
    dead = _dead_identity()
    token = dead.token("-")
    blob = isobox_home / "tmp" / f"{token}-0123456789ab.blob"
    blob.parent.mkdir(exist_ok=True)
    blob.write_bytes(b"half a layer")
    heredoc = Path(tempfile.gettempdir()) / f"isobox-run-{token}-abcd1234"
    heredoc.mkdir()
    rootfs = Path(tempfile.gettempdir()) / f"isobox-rootfs-{token}-efgh5678"  # image(rootfs=)
    (rootfs / "bin").mkdir(parents=True)
    try:
        check = isobox("--home", str(isobox_home), "system", "check", "--json")
        lines = json.loads(check.stdout)
        assert f"temp {blob} (owner pid {dead.pid} is gone)" in lines
        assert f"temp {heredoc} (owner pid {dead.pid} is gone)" in lines
        assert f"temp {rootfs} (owner pid {dead.pid} is gone)" in lines
        pruned = isobox("--home", str(isobox_home), "system", "check", "--prune")
        assert pruned.returncode == 0, pruned.stderr
        assert not blob.exists() and not heredoc.exists() and not rootfs.exists()
        assert f"temp {blob.name} of dead process {dead.pid}" in pruned.stdout
    finally:
        heredoc.exists() and heredoc.rmdir()
        shutil.rmtree(rootfs, ignore_errors=True)
