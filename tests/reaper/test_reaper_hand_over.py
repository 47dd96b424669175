"""A closing engine can leave its reaper work to finish (`RunReaper.hand_over`): the CLI's
and the pytest plugin's close hand the network teardown they would wait for (veths, an unused
default bridge) to the reaper, which does it after the command or the session has ended,
then ends. Nothing of ours remains once the command or the run and its reaper are gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from pytest_isobox import hostcheck
from tests.conftest import REPO, needs_root, system_check

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


HANDED_TWICE = """
import os, sys, time
from pytest_isobox import reaper as module
from pytest_isobox.reaper import RunReaper
from pytest_isobox.processes import ProcessIdentity

def handed():
    one = RunReaper(ProcessIdentity.current(), lambda owner: None, finish=lambda work: None)
    one.ensure()
    pid = one.pid
    assert one.hand_over({})
    return pid

def zombie(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0] == "Z"

first = handed()  # (a pytest session in a process that lives on, as pytester's inline runs)
deadline = time.monotonic() + 10
while not zombie(first):  # its work done, the reaper has exited: not waited for yet
    assert time.monotonic() < deadline
    time.sleep(0.01)
second = handed()  # the next one's hand-over collects it
try:
    os.waitpid(first, os.WNOHANG)
    raise AssertionError("the first reaper was not collected")
except ChildProcessError:
    pass
assert module._handed == [second] or module._handed == []
print("ok")
"""


def test_a_process_that_lives_on_collects_its_handed_over_reapers() -> None:
    """No zombie reapers pile up in a long-lived process: each hand-over or reaper fork
    collects the earlier handed-over reapers that have finished."""
    done = subprocess.run([sys.executable, "-c", HANDED_TWICE], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


def _reapers_of(home: Path) -> set[int]:
    """The reapers whose environment names this home (forked by CLI commands using it)."""
    found = set()
    for process in psutil.process_iter(["name"]):
        if process.info["name"] not in ("isobox-reaper", "isobox-finisher"):
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


PYTEST_CONFTEST = """
import json, os, pathlib
from pytest_isobox import container, image, wait


def pytest_isobox_container_created(container):  # its id and its network's bridge
    record = pathlib.Path(os.environ["ISOBOX_HOME"], "networks", "by-name", "bridge.json")
    with open(os.environ["HANDOVER_IDS"], "a") as out:
        out.write(container.id + " " + json.loads(record.read_text())["bridge"] + "\\n")


base = image(rootfs={rootfs!r}, tag="handover:latest")
web = container(image="{{base}}", command=["httpd", "-f", "-p", "80", "-h", "/etc"],
                ports=[80], ready=wait.tcp(80), scope="function")
"""


@needs_root
def test_a_pytest_session_leaves_its_network_teardown_to_its_reaper(
        isobox_home: Path, busybox_rootfs: Path, tmp_path: Path) -> None:
    """The plugin's session closes its engine without waiting for the last veths and the
    unused default bridge: `isobox system check` right after pytest has exited waits for
    the reaper finishing them, and once pytest and its reaper are gone nothing remains."""
    baseline = tmp_path / "baseline"
    assert system_check("--save", str(baseline)).returncode == 0
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(PYTEST_CONFTEST.format(rootfs=str(busybox_rootfs)))
    (project / "test_web.py").write_text(
        "def test_one(web):\n    assert web.get_addr(80)\n\n"
        "def test_two(web):\n    assert web.get_addr(80)\n")
    ids = tmp_path / "ids"
    env = {**os.environ, "ISOBOX_HOME": str(isobox_home), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           "HANDOVER_IDS": str(ids)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "pytest_isobox.plugin", "--isobox-engine=native"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in ids.read_text().splitlines()]
    containers, bridges = [r[0] for r in rows], sorted({r[1] for r in rows})
    check = system_check("--baseline", str(baseline))  # (not waiting for the reaper first)
    names = [str(isobox_home), *bridges, *(f"ibv{c[:10]}" for c in containers)]
    assert [line for line in check.stdout.splitlines() if any(n in line for n in names)] == [], \
        check.stdout
    record = isobox_home / "networks" / "by-name" / "bridge.json"
    wait_gone(_reapers_of(isobox_home))
    assert not record.exists()
    assert _ours(isobox_home) == []
    for bridge in bridges:
        assert not Path(f"/sys/class/net/{bridge}").exists()
    assert len(containers) == 2
    assert not [link for link in os.listdir("/sys/class/net")
                if any(link.startswith(f"ibv{c[:10]}") for c in containers)]
