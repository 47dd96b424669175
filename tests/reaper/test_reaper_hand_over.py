"""A closing engine can leave its reaper work to finish (`RunReaper.hand_over`): the CLI's
close hands the network teardown it would wait for (veths, an unused default bridge) to the
reaper, which does it after the command has exited, then ends. Nothing of ours remains once
the command and its reaper are gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from pytest_isobox import hostcheck
from tests.conftest import REPO, needs_root

OWNER = """
import json, sys
from pathlib import Path
from pytest_isobox.reaper import RunReaper
from pytest_isobox.processes import ProcessIdentity

marker = Path(sys.argv[1])
reaper = RunReaper(ProcessIdentity.current(), lambda owner: marker.write_text("reaped"),
                   finish=lambda work: marker.write_text(json.dumps(work)))
reaper.ensure()
print(reaper.pid, flush=True)
assert reaper.hand_over({"links": ["x" * 100] * 1000})  # more than a pipe's atomic write
assert reaper.pid is None and not reaper.hand_over({})  # once; close() is a no-op now
reaper.close()
"""


def wait_gone(pids: set[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids):
        assert time.monotonic() < deadline, f"still running: {pids}"
        time.sleep(0.01)


def test_a_handed_over_reaper_finishes_the_work_then_exits(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    proc = subprocess.run([sys.executable, "-c", OWNER, str(marker)], cwd=REPO, check=True,
                          capture_output=True, text=True, timeout=60)
    wait_gone({int(proc.stdout.split()[0])})
    assert json.loads(marker.read_text()) == {"links": ["x" * 100] * 1000}  # not "reaped"


def _reapers_of(home: Path) -> set[int]:
    """The reapers whose environment names this home (forked by CLI commands using it)."""
    found = set()
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != "isobox-reaper":
            continue
        try:
            if process.environ().get("ISOBOX_HOME") == str(home):
                found.add(process.pid)
        except psutil.Error:
            continue
    return found


def _ours(home: Path) -> list[str]:
    network_ids = set()
    for path in (home / "networks" / "by-name").glob("*.json"):
        network_ids.add(json.loads(path.read_text())["id"])
    lines = hostcheck.current_state([home])
    return [line for line in lines if str(home) in line
            or any(i[:8] in line for i in network_ids)]


@needs_root
def test_cli_run_rm_leaves_the_bridge_to_its_reaper_and_nothing_remains(
        isobox_home: Path, busybox_rootfs: Path, tmp_path: Path) -> None:
    env = {**os.environ, "ISOBOX_HOME": str(isobox_home)}
    cli = [sys.executable, "-m", "pytest_isobox.cli"]
    tar = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
    subprocess.run([*cli, "import", str(tar), "handover:latest"], env=env, check=True,
                   capture_output=True, cwd=REPO)
    bridge_seen = []
    for command in (["run", "--rm", "handover", "true"],
                    ["run", "--rm", "-p", "127.0.0.1::80", "handover", "true"]):
        done = subprocess.run([*cli, *command], env=env, capture_output=True, text=True,
                              cwd=REPO, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        record = isobox_home / "networks" / "by-name" / "bridge.json"
        if record.exists():  # (the reaper may have finished already)
            bridge_seen.append(json.loads(record.read_text())["bridge"])
        wait_gone(_reapers_of(isobox_home))
        assert not record.exists()
        assert _ours(isobox_home) == []
        for bridge in bridge_seen:
            assert not Path(f"/sys/class/net/{bridge}").exists()
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True,
                               check=True).stdout
        assert not [line for line in rules.splitlines() if "isobox:net:" in line
                    and any(b[7:] in line for b in bridge_seen)]


@needs_root
def test_cli_run_d_then_rm_f_in_another_process_tears_down(isobox_home: Path,
                                                           busybox_rootfs: Path,
                                                           tmp_path: Path) -> None:
    env = {**os.environ, "ISOBOX_HOME": str(isobox_home)}
    cli = [sys.executable, "-m", "pytest_isobox.cli"]
    tar = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
    subprocess.run([*cli, "import", str(tar), "handover:latest"], env=env, check=True,
                   capture_output=True, cwd=REPO)
    started = subprocess.run([*cli, "run", "-d", "-p", "127.0.0.1::80", "handover", "sleep",
                              "60"], env=env, capture_output=True, text=True, cwd=REPO,
                             timeout=60, check=False)
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        wait_gone(_reapers_of(isobox_home))
        record = json.loads((isobox_home / "networks" / "by-name" / "bridge.json").read_text())
        endpoint = json.loads((isobox_home / "networks" / "endpoints"
                               / f"{container}.json").read_text())
        veth = endpoint["networks"][0]["veth"]
        assert Path(f"/sys/class/net/{record['bridge']}").exists()  # the detached one's
        assert Path(f"/sys/class/net/{veth}").exists()
    finally:
        removed = subprocess.run([*cli, "rm", "-f", container], env=env, capture_output=True,
                                 text=True, cwd=REPO, timeout=60, check=False)
    assert removed.returncode == 0, removed.stderr
    wait_gone(_reapers_of(isobox_home))
    assert not (isobox_home / "networks" / "by-name" / "bridge.json").exists()
    assert not Path(f"/sys/class/net/{record['bridge']}").exists()
    assert not Path(f"/sys/class/net/{veth}").exists()
    assert _ours(isobox_home) == []
