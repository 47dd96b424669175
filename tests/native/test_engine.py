"""NativeEngine across processes: persistent containers, owners killed with -9, the sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pytest_isobox.engine import ContainerSpec, EngineUnavailable
from tests.conftest import REPO, needs_root, system_check

pytestmark = needs_root

OWNER = """
import json, sys
from pytest_isobox.engine import ContainerSpec
from pytest_isobox.native.engine import NativeEngine
engine = NativeEngine(home=sys.argv[1])
rootfs, persistent = sys.argv[2], sys.argv[3] == "persistent"
ids = [engine.run(ContainerSpec(image=rootfs, network_mode="none", persistent=persistent,
                                command=["sh", "-c", "echo started; exec sleep 600"])).id
       for _ in range(2)]
print(json.dumps(ids), flush=True)
if not persistent:
    sys.stdin.read()  # stay alive (and own the containers) until told or killed
engine.close()  # persistent containers run on
"""


def start_owner(home: Path, rootfs: Path, mode: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(home), str(rootfs), mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        pytest.fail(f"owner process failed with status {proc.returncode}")
    return proc, json.loads(line)


def leftovers(baseline: Path, ids: list[str]) -> list[str]:
    """What `isobox system check` reports as new that is ours. Other runs may share this host, and pid
    namespace numbers are reused at once, so processes are checked by pid instead."""
    result = system_check("--baseline", str(baseline))
    return [line for line in result.stdout.splitlines() if any(cid in line for cid in ids)]


@pytest.fixture
def leak_baseline(tmp_path: Path) -> Path:
    path = tmp_path / "leak-baseline"
    assert system_check("--save", str(path)).returncode == 0
    return path


def test_kill_9_of_the_owner_then_sweep_leaves_nothing(isobox_home, busybox_rootfs,
                                                      leak_baseline):
    from pytest_isobox.native.engine import NativeEngine

    doomed, doomed_ids = start_owner(isobox_home, busybox_rootfs, "owned")
    alive, alive_ids = start_owner(isobox_home, busybox_rootfs, "owned")
    try:
        descendants = psutil.Process(doomed.pid).children(recursive=True)  # monitors, spare
        cgroups = {line.split(":", 2)[2] for p in descendants
                   for line in Path(f"/proc/{p.pid}/cgroup").read_text().splitlines()
                   if "isobox/" in line}
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        sweeper = NativeEngine(home=isobox_home)  # sweeps at start
        _, still_alive = psutil.wait_procs(descendants, timeout=30)  # containers included
        assert still_alive == []
        assert cgroups and not [c for c in cgroups
                                if any(Path(f"/sys/fs/cgroup/{h}{c}").exists()
                                       for h in ("pids", "memory", "cpu", "freezer", "unified"))]
        for cid in doomed_ids:  # gone: by the monitor that saw its owner die, or by the sweep
            assert not (isobox_home / "containers" / cid).exists()
        for cid in alive_ids:  # a live owner's containers are never touched
            assert sweeper.state(cid).status == "running"
        assert leftovers(leak_baseline, doomed_ids) == []
        assert all(sweeper.exec(c, ["true"]).exit_code == 0 for c in alive_ids)
    finally:
        alive.stdin.close()  # its engine.close() removes its containers
        alive.wait(timeout=60)
        if doomed.poll() is None:
            doomed.kill()
    assert not any((isobox_home / "containers" / c).exists() for c in alive_ids)
    NativeEngine(home=isobox_home).close()


def test_persistent_containers_outlive_their_creator(isobox_home, busybox_rootfs):
    from pytest_isobox.native.engine import NativeEngine

    creator, ids = start_owner(isobox_home, busybox_rootfs, "persistent")
    assert creator.wait(timeout=60) == 0
    engine = NativeEngine(home=isobox_home)  # its sweep must leave them alone
    try:
        first, second = ids
        assert engine.state(first).status == "running"
        logs = list(engine.logs(first, follow=False))
        assert logs == [("stdout", b"started\n")]
        assert engine.exec(first, ["cat", "/etc/hostname"]).stdout == f"{first[:12]}\n".encode()
        assert {s.id for s in engine.containers()} >= set(ids)
        engine.stop(first, timeout=0.2)
        assert engine.state(first).status == "exited"
        assert engine.wait(first) == 137
        engine.remove(second, force=True)
        assert engine.containers(all=True)[0].id == first
        engine.remove(first)
        assert engine.containers(all=True) == []
    finally:
        for cid in ids:
            if (isobox_home / "containers" / cid).exists():
                engine.remove(cid, force=True)


def test_auto_remove_container_is_gone_after_wait(isobox_home, busybox_rootfs):
    from pytest_isobox.native.engine import NativeEngine

    with NativeEngine(home=isobox_home) as engine:
        state = engine.run(ContainerSpec(image=str(busybox_rootfs), command=["sh", "-c", "exit 7"],
                                         network_mode="none", auto_remove=True))
        assert engine.wait(state.id) == 7
        assert not (isobox_home / "containers" / state.id).exists()


def test_missing_prerequisites_name_what_is_missing(monkeypatch):
    from pytest_isobox.native import engine as native

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EngineUnavailable, match="needs root"):
        native.check_prerequisites()


def test_auto_remove_container_seen_exited_first_is_gone_after_wait(isobox_home,
                                                                     busybox_rootfs) -> None:
    """A --rm container that another call (state, inspect: the events journal's) saw exited
    before wait() reaped its monitor goes all the same (it once stayed)."""
    from pytest_isobox.native.engine import NativeEngine

    with NativeEngine(home=isobox_home) as engine:
        state = engine.run(ContainerSpec(image=str(busybox_rootfs), command=["sh", "-c", "exit 7"],
                                         network_mode="none", auto_remove=True))
        from pytest_isobox.polling import readable

        try:
            pidfd = os.pidfd_open(state.pid)
        except ProcessLookupError:  # ended already
            pidfd = -1
        if pidfd >= 0:
            try:
                assert readable([pidfd], 30)  # its PID 1 has ended
            finally:
                os.close(pidfd)
        deadline = time.monotonic() + 30
        while engine.state(state.id).status != "exited":  # reaps the monitor's handle
            assert time.monotonic() < deadline, "the exit was never recorded"
        assert engine.wait(state.id) == 7
        assert not (isobox_home / "containers" / state.id).exists()
