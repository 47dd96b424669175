"""Flags of issue 15 checked on both engines, beside dockerd's outcome: exec --privileged,
ps -s, images --digests and REPO[:TAG], inspect finding networks and volumes, volume
inspect/ls, system df/info, top, stats --format, run/create flags (--read-only, --mount,
--label-file, -a, --sig-proxy, --pull)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.cli.conftest import Cli
from tests.conftest import needs_root

pytestmark = needs_root

CAP_SYS_ADMIN = 21


def _capeff(text: str) -> int:
    return int(text.split()[1], 16)


def test_exec_privileged(cli: Cli) -> None:
    name = cli.run_d("--cap-drop", "ALL")
    status = ("grep", "CapEff", "/proc/self/status")
    assert _capeff(cli.out("exec", name, *status)) == 0
    done = cli("exec", "--privileged", name, *status, check=False)
    if cli.engine == "docker" and done.returncode != 0:  # a dockerd that cannot grant all
        assert done.returncode == 126 and b"apply caps" in done.stdout  # (a sandbox's
        return                                               # bounding set): as docker's
    assert done.returncode == 0, done.stderr
    assert _capeff(done.stdout.decode()) & (1 << CAP_SYS_ADMIN)
    assert _capeff(cli.out("exec", name, *status)) == 0  # the next exec: the container's


def test_mount_bind_volume_tmpfs(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("host\n")
    vol = cli.name("volume")
    mounts = ("--mount", f"type=bind,source={tmp_path},target=/h,readonly",
              "--mount", f"type=volume,source={vol},target=/v",
              "--mount", "type=tmpfs,target=/t,tmpfs-size=1m")
    name = cli.run_d(*mounts)
    assert cli.out("exec", name, "cat", "/h/f.txt") == "host\n"
    denied = cli("exec", name, "touch", "/h/new", check=False)
    assert denied.returncode != 0 and b"Read-only file system" in denied.stderr
    cli("exec", name, "sh", "-c", "echo kept > /v/a")
    assert cli.out("exec", name, "sh", "-c", "df -k /t | tail -1").split()[1] == "1024"
    mounted = {m["Destination"]: m for m in json.loads(cli.out("inspect", name))[0]["Mounts"]}
    assert mounted["/h"]["Type"] == "bind" and mounted["/h"]["RW"] is False
    assert mounted["/v"]["Type"] == "volume" and mounted["/v"]["Name"] == vol
    again = cli("run", "--rm", "--mount", f"type=volume,src={vol},dst=/v", cli.image,
                "cat", "/v/a")
    assert again.stdout == b"kept\n"
    anonymous = cli.run_d("--mount", "type=volume,target=/etc")  # filled from the image
    assert cli.out("exec", anonymous, "head", "-1", "/etc/passwd").startswith("root:")
    [mount] = json.loads(cli.out("inspect", anonymous))[0]["Mounts"]
    assert mount["Type"] == "volume" and len(mount["Name"]) == 64
    cli("rm", "-f", "-v", anonymous)  # its anonymous volume goes with it
    assert mount["Name"] not in cli.out("volume", "ls", "-q").split()
    missing = cli("run", "--rm", "--mount", "type=bind,source=/isobox-no-such-dir,target=/x",
                  cli.image, "true", check=False)
    err = missing.stderr.decode()
    assert missing.returncode == 125 and err.count("\n") == 1
    assert "bind source path does not exist: /isobox-no-such-dir" in err


def test_read_only_root_with_a_tmpfs(cli: Cli) -> None:
    denied = cli("run", "--rm", "--read-only", cli.image, "touch", "/x", check=False)
    assert denied.returncode == 1 and b"Read-only file system" in denied.stderr
    done = cli("run", "--rm", "--read-only", "--tmpfs", "/tmp", cli.image, "sh", "-c",
               "touch /tmp/x && echo ok")
    assert done.stdout == b"ok\n"
    name = cli.run_d("--read-only")
    assert cli.out("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", name) == "true\n"


def test_attach_picks_the_streams(cli: Cli) -> None:
    script = ("sh", "-c", "echo out; echo err >&2")
    only_out = cli("run", "--rm", "-a", "stdout", cli.image, *script)
    assert (only_out.stdout, only_out.stderr) == (b"out\n", b"")
    only_err = cli("run", "--rm", "-a", "STDERR", cli.image, *script)
    assert (only_err.stdout, only_err.stderr) == (b"", b"err\n")
    both = cli("run", "--rm", "-a", "stdout", "-a", "stderr", cli.image, *script)
    assert (both.stdout, both.stderr) == (b"out\n", b"err\n")
    for argv, needle in ((["-a", "stdout", "-d"], "--attach and --detach"),
                         (["-a", "stdvid"], "STDIN, STDOUT and STDERR"),
                         (["--sig-proxy=maybe"], "'maybe'"),
                         (["--mount", "type=nfs,target=/x"], "type=nfs"),
                         (["--mount", "type=volume,target=/v,colour=red"], "colour")):
        bad = cli("run", *argv, cli.image, "true", check=False)
        assert bad.returncode == 125 and needle in bad.stderr.decode()
        assert bad.stderr.decode().count("\n") == 1


def _run_foreground(cli: Cli, *flags: str) -> tuple[subprocess.Popen, str]:
    """A foreground `run` whose container traps TERM; returns once it says it is ready."""
    name = cli.name()
    trap = "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.2 & wait $!; done"
    proc = subprocess.Popen([sys.executable, "-m", "pytest_isobox.cli", "--engine", cli.engine,
                             "run", "--name", name, *flags, cli.image, "sh", "-c", trap],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc, name


def test_sig_proxy(cli: Cli) -> None:
    proc, name = _run_foreground(cli)
    try:
        proc.send_signal(signal.SIGTERM)  # passed on: the container's trap ends it with 3
        assert proc.wait(timeout=60) == 3
        assert proc.stdout.read() == b"got TERM\n"
    finally:
        proc.kill()
        proc.wait()
    proc, name = _run_foreground(cli, "--sig-proxy=false")
    try:
        proc.send_signal(signal.SIGTERM)  # this command ends; the container goes on
        assert proc.wait(timeout=60) != 3
        assert cli.out("inspect", "-f", "{{.State.Running}}", name) == "true\n"
    finally:
        proc.kill()
        proc.wait()


def test_label_file(cli: Cli, tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.write_text("# team labels\ncom.example.team=infra\n\ncom.example.flag\n")
    name = cli.run_d("--label-file", str(labels), "-l", "com.example.team=override")
    got = json.loads(cli.out("inspect", "-f", "{{json .Config.Labels}}", name))
    assert got["com.example.team"] == "override" and got["com.example.flag"] == ""


def test_pull_never_and_missing(cli: Cli) -> None:
    absent = cli("run", "--rm", "--pull", "never", "isobox-test/absent-image:1", "true",
                 check=False)
    assert absent.returncode == 125 and absent.stderr.decode().count("\n") == 1
    assert b"absent-image" in absent.stderr
    here = cli("run", "--rm", "--pull", "missing", cli.image, "echo", "local")
    assert here.stdout == b"local\n"
    bad = cli("run", "--rm", "--pull", "sometimes", cli.image, "true", check=False)
    assert bad.returncode == 125 and b"sometimes" in bad.stderr


def test_system_df(cli: Cli) -> None:
    """Docker's columns and rows; on the native engine's own home, the counts exactly."""
    vol = cli.name("volume")
    running = cli.run_d("-v", f"{vol}:/d")
    created = cli.name()
    cli("create", "--name", created, cli.image, "true")
    lines = cli.out("system", "df").splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split("  ")[0] for line in lines[1:]] == [
        "Images", "Containers", "Local Volumes", "Build Cache"]
    rows = {r["Type"]: r for r in map(json.loads,
                                      cli.out("df", "--format", "json").splitlines())}
    containers = rows["Containers"]
    assert int(containers["TotalCount"]) >= 2 and 1 <= int(containers["Active"]) \
        <= int(containers["TotalCount"]) - 1
    assert int(rows["Local Volumes"]["Active"]) >= 1
    assert cli.out("system", "df", "--format", "{{.Type}}={{.Active}}").count("=") == 4
    if cli.engine == "native":
        assert (containers["TotalCount"], containers["Active"]) == ("2", "1")
        assert (rows["Images"]["TotalCount"], rows["Images"]["Active"]) == ("1", "1")
        assert rows["Images"]["Reclaimable"] == "0B (0%)"  # its only image is in use
    else:  # the same rows as the Docker CLI's own
        docker = subprocess.run(["docker", "system", "df", "--format", "{{.Type}}"],
                                capture_output=True, text=True, check=True).stdout
        assert cli.out("system", "df", "--format", "{{.Type}}") == docker
    assert running


def test_stats_streams_a_template_until_the_container_ends(cli: Cli) -> None:
    name = cli.run_d()
    proc = subprocess.Popen([sys.executable, "-m", "pytest_isobox.cli", "--engine", cli.engine,
                             "stats", "--format",
                             "{{.Name}}|{{.CPUPerc}}|{{.MemPerc}}|{{.NetIO}}|{{.BlockIO}}", name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        for _ in range(2):  # a sample, then another: it streams
            fields = proc.stdout.readline().decode().rstrip("\n").split("|")
            assert fields[0] == name and fields[1].endswith("%") and fields[2].endswith("%")
            assert " / " in fields[3] and " / " in fields[4]
        cli("stop", "-t", "1", name)
        assert proc.wait(timeout=60) == 0  # stats of a stopped container end
    finally:
        proc.kill()
        proc.wait()


def test_stats_block_io(cli: Cli) -> None:
    script = "dd if=/dev/zero of=/f bs=1M count=4 conv=fsync 2>/dev/null; echo done; sleep 1000"
    name = cli.run_d(command=("sh", "-c", script))
    deadline = time.monotonic() + 60
    while cli.out("logs", name) != "done\n":
        assert time.monotonic() < deadline, "dd did not finish"
        time.sleep(0.1)
    read, _, written = cli.out("stats", "--no-stream", "--format", "{{.BlockIO}}",
                               name).strip().partition(" / ")
    assert read[0].isdigit() and written[0].isdigit() and written.endswith("B")
    if cli.engine == "native":  # per process; dockerd's blkio cgroup may count none (v1, mq)
        assert written.endswith("MB") and float(written[:-2]) >= 4


def test_system_prune_as_docker(cli: Cli) -> None:
    """Docker's `system prune -f`, kept to this test's objects by a label filter (the
    daemon is shared): stopped containers and unused networks go, the rest stays."""
    label = f"isobox.test.prune={uuid.uuid4().hex}"
    stopped, other = cli.name(), cli.name()
    cli("run", "--name", stopped, "-l", label, cli.image, "true")
    cli("run", "--name", other, cli.image, "true")  # not labelled: stays
    running = cli.run_d("-l", label)
    idle_net, used_net = cli.name("network"), cli.name("network")
    cli("network", "create", "-l", label, idle_net)
    cli("network", "create", "-l", label, used_net)
    on_net = cli.run_d("--network", used_net)
    refused = cli("system", "prune", "--filter", f"label={label}", check=False)
    assert refused.returncode == 1 and b"--force" in refused.stderr  # no terminal to ask
    out = cli.out("system", "prune", "-f", "--filter", f"label={label}")
    assert out.startswith("Deleted Containers:\n") and "Total reclaimed space:" in out
    stopped_id_gone = cli("inspect", "--type", "container", stopped, check=False)
    assert stopped_id_gone.returncode == 1
    for kept in (other, running, on_net):
        cli("inspect", "--type", "container", kept)
    assert f"Deleted Networks:\n{idle_net}\n" in out
    cli("network", "inspect", used_net)
    assert cli("network", "inspect", idle_net, check=False).returncode == 1


def _steady_top(out: str) -> list[list[str]]:
    """`top`'s table without the columns that tick (C, the CPU share; TIME, the CPU time):
    UID PID PPID C STIME TTY TIME CMD."""
    rows = [line.split(None, 7) for line in out.splitlines()]
    return [[*row[:3], *row[4:6], *row[7:]] for row in rows]


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def test_docker_engine_prints_what_the_docker_cli_prints(dockercli: Cli) -> None:
    """The same daemon through `isobox --engine docker` and through `docker`: the same lines
    for listings, templates and documents (what does not tick with the clock)."""
    cli = dockercli
    vol, net = cli.name("volume"), cli.name("network")
    cli("volume", "create", vol)
    cli("network", "create", net)
    name = cli.run_d("--network", net, "-p", "127.0.0.1::8080", "-l", "k=v")
    repo = cli.image.rsplit(":", 1)[0]
    networks = ("{{json .NetworkSettings.Ports}} {{.HostConfig.NetworkMode}} "
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}}{{end}}")
    for args in (
        ("volume", "ls", "--filter", f"name={vol}"),
        ("volume", "ls", "-q", "--filter", f"name={vol}"),
        ("network", "ls", "--filter", f"name={net}"),
        ("images", "--digests", "--format",
         "{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}} {{.Size}}", repo),
        ("ps", "-a", "--filter", f"name={name}", "--format",
         "{{.Names}} {{.Image}} {{.Command}} {{.State}} {{.Ports}} {{.Labels}}"),
        ("inspect", "-f", networks, name),
        ("port", name),
        ("system", "df", "--format", "{{.Type}}"),
        ("inspect", name), ("network", "inspect", net), ("volume", "inspect", vol),
        ("image", "inspect", cli.image), ("inspect", "--type", "volume", vol),
        ("images", "-q", repo), ("ps", "-q", "--no-trunc", "--filter", f"name={name}"),
        ("port", name, "8080"), ("image", "history", "-q", cli.image),
        ("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", name),
    ):
        assert cli.out(*args) == _docker(*args), args
    assert _steady_top(cli.out("top", name)) == _steady_top(_docker("top", name))
    said = cli.run_d(command=("sh", "-c", "echo one; echo two >&2; echo three; sleep 1000"))
    for _ in range(600):  # until it has said all
        if _docker("logs", said).count("\n") == 2:  # (stdout; stderr apart)
            break
        time.sleep(0.05)
    for args in (("logs", said), ("logs", "--tail", "1", said), ("logs", "-t", said),
                 ("logs", "--tail", "all", said)):
        mine = cli(*args)
        theirs = subprocess.run(["docker", *args], capture_output=True, check=True)
        assert (mine.stdout, mine.stderr) == (theirs.stdout, theirs.stderr), args


def test_native_tables_have_the_docker_cli_columns(native: Cli, dockercli: Cli) -> None:
    """Each listing's header on the native engine, column for column the Docker CLI's."""
    mine, theirs = native.run_d(), dockercli.run_d()
    for args in (("ps",), ("ps", "-s"), ("ps", "-a", "--no-trunc"), ("images",),
                 ("images", "--digests"), ("network", "ls"), ("volume", "ls"),
                 ("system", "df"), ("image", "history", "{image}"), ("top", "{name}"),
                 ("stats", "--no-stream", "{name}")):
        header = native.out(*_fill(args, native, mine)).splitlines()[0].split()
        assert header == _docker(*_fill(args, dockercli, theirs)).splitlines()[0].split(), args


def _fill(args: tuple[str, ...], cli: Cli, name: str) -> list[str]:
    return [a.format(image=cli.image, name=name) for a in args]


def _gone_within(cli: Cli, name: str, seconds: float) -> bool:
    """Whether `ps -a` stops listing `name` within `seconds` (Docker removes --rm
    containers asynchronously: polled, not slept on)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not cli.out("ps", "-aq", "--filter", f"name=^{name}$").strip():
            return True
    return False


def test_detached_rm_container_goes_when_it_ends(cli: Cli) -> None:
    """`run -d --rm`: removed once it exits, whether on its own, stopped or killed, by
    whatever process is around (the one that ran it has gone)."""
    for end in ("exit", "stop", "kill"):
        name = cli.name()
        command = ["true"] if end == "exit" else ["sleep", "1000"]
        cli("run", "-d", "--rm", "--name", name, cli.image, *command)
        if end == "stop":
            cli("stop", "-t", "1", name)
        elif end == "kill":
            cli("kill", name)
        assert _gone_within(cli, name, 30), f"{end}: still listed"


def test_stop_kill_rm_go_on_past_a_missing_container(cli: Cli) -> None:
    """As Docker: each container named is tried, each failure one line, exit 1 if any."""
    for verb in (("stop", "-t", "0"), ("kill",), ("rm", "-f")):
        name = cli.run_d()
        missing = f"isobox-cli-missing-{verb[0]}"
        got = cli(*verb, missing, name, check=False)
        assert got.returncode == 1, verb
        assert got.stdout.decode() == f"{name}\n", verb
        assert got.stderr.decode().count("\n") == 1 and missing in got.stderr.decode(), verb


def test_a_paused_container_is_force_removed(cli: Cli) -> None:
    """As Docker: `rm -f` of a paused container kills and removes it (the freezer held the
    SIGKILL back until the native engine thawed it)."""
    name = cli.run_d()
    cli("pause", name)
    cli("rm", "-f", name, timeout=20)
    assert not cli.out("ps", "-aq", "--filter", f"name=^{name}$").strip()
