"""Container verbs beyond run/stop on both engines: pause/unpause (the cgroup freezer on the
native engine), restart, rename, top; version and system info."""

from __future__ import annotations

import json

from tests.cli.conftest import Cli
from tests.conftest import needs_root

pytestmark = needs_root


def _task_state(pid: str) -> str:
    with open(f"/proc/{pid}/status") as status:
        return next(line.split()[1] for line in status if line.startswith("State:"))


def _counter_value(cli: Cli, name: str) -> str:
    return cli.out("exec", name, "cat", "/tmp/n").strip()


def test_pause_freezes_and_unpause_thaws(cli: Cli) -> None:
    loop = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; done"
    name = cli.run_d(command=("sh", "-c", loop))
    cli("pause", name)
    assert cli.out("inspect", "-f", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}",
                   name) == "paused true true\n"
    assert "(Paused)" in cli.out("ps", "--filter", f"name={name}", "--format", "{{.Status}}")
    assert cli.out("ps", "--filter", "status=paused", "--format", "{{.Names}}").split() == [name]
    # frozen: the kernel shows the busy loop in the refrigerator (D), not running (R)
    pid = cli.out("inspect", "-f", "{{.State.Pid}}", name).strip()
    assert _task_state(pid) == "D"
    again = cli("pause", name, check=False)
    assert again.returncode == 1 and "paused" in again.stderr.decode()
    cli("unpause", name)
    first = _counter_value(cli, name)
    second = _counter_value(cli, name)
    assert int(second) > int(first)  # counting again
    assert cli.out("inspect", "-f", "{{.State.Status}}", name) == "running\n"


def test_stop_of_a_paused_container(cli: Cli) -> None:
    name = cli.run_d()
    cli("pause", name)
    cli("stop", "-t", "1", name)
    assert cli.out("inspect", "-f", "{{.State.Status}}", name) == "exited\n"


def test_restart_rename_top(cli: Cli) -> None:
    name = cli.run_d()
    pid = cli.out("inspect", "-f", "{{.State.Pid}}", name).strip()
    cli("restart", "-t", "1", name)
    assert cli.out("inspect", "-f", "{{.State.Status}}", name) == "running\n"
    assert cli.out("inspect", "-f", "{{.State.Pid}}", name).strip() != pid
    new = cli.name()
    cli("rename", name, new)
    assert cli.out("inspect", "-f", "{{.Name}}", new) == f"/{new}\n"
    assert cli("inspect", "--type", "container", name, check=False).returncode == 1
    taken = cli.run_d()
    clash = cli("rename", new, taken, check=False)
    assert clash.returncode != 0 and taken in clash.stderr.decode()
    assert clash.stderr.decode().count("\n") == 1
    lines = cli.out("top", new).splitlines()
    assert "PID" in lines[0].split() and "CMD" in lines[0].split()
    assert any(line.endswith("sleep 1000") for line in lines[1:])
    assert len(lines) == 2  # only the container's processes
    own = cli.out("top", new, "-o", "pid,comm").splitlines()
    assert own[0].split() == ["PID", "COMMAND"] and own[1].split()[1] == "sleep"


def test_version_and_info(cli: Cli) -> None:
    version = json.loads(cli.out("version", "-f", "{{json .}}"))
    assert version["Client"]["Version"] and version["Server"]["Version"]
    assert cli.engine in cli.out("version")
    name = cli.run_d()
    info = json.loads(cli.out("system", "info", "--format", "{{json .}}"))
    assert info["ContainersRunning"] >= 1 and info["Images"] >= 1 and info["NCPU"] >= 1
    assert info["KernelVersion"] and info["OSType"] == "linux"
    text = cli.out("info")
    assert "Containers:" in text and "Kernel Version:" in text
    assert name
