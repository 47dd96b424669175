"""`isobox run`/`create` flags of issue 15 end to end (native engine), and the same command
through Docker's CLI with the outcome compared when a dockerd answers."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import docker_available, needs_root
from tests.test_cli import isobox

pytestmark = needs_root


@pytest.fixture
def base(busybox_rootfs: Path, isobox_home: Path) -> str:
    isobox("import", str(busybox_rootfs), "busybox:flags")
    return "busybox:flags"


def nothing_made() -> bool:
    return isobox("ps", "-a", "-q").stdout.strip() == b""


def test_caps_and_privileged(base: str) -> None:
    status = "grep CapEff /proc/self/status"
    out = isobox("run", "--rm", "--cap-drop", "ALL", "--cap-add", "cap_kill", base,
                 "sh", "-c", status).stdout.decode()
    assert int(out.split()[1], 16) == 1 << 5
    out = isobox("run", "--rm", "--privileged", base, "sh", "-c",
                 "grep Seccomp: /proc/self/status").stdout.decode()
    assert out.split() == ["Seccomp:", "0"]
    bad = isobox("run", "--rm", "--cap-add", "CAP_NOPE", base, "true", check=False)
    assert bad.returncode == 125
    assert bad.stderr.decode().strip() == "isobox: unknown capability: 'CAP_NOPE'"
    assert nothing_made()


def test_env_file_and_label_file(base: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FROM_HERE", "outer value")
    env_file = tmp_path / "app.env"
    env_file.write_text("# a comment\n\nA=1\n  B=two words\nFROM_HERE\nUNSET_HERE\nA=3\n")
    out = isobox("run", "--rm", "--env-file", str(env_file), "-e", "C=c", base, "sh", "-c",
                 'echo "$A|$B|$FROM_HERE|${UNSET_HERE-unset}|$C"').stdout.decode()
    assert out == "3|two words|outer value|unset|c\n"
    labels = tmp_path / "labels"
    labels.write_text("team=qa\n#x\nflag\n")
    cid = isobox("create", "--label-file", str(labels), "-l", "extra=1", base,
                 "true").stdout.decode().strip()
    try:
        doc = json.loads(isobox("inspect", cid).stdout)[0]
        assert {"team": "qa", "flag": "", "extra": "1"}.items() <= doc["Config"]["Labels"].items()
    finally:
        isobox("rm", "-f", cid)
    env_file.write_text("OK=1\nBAD NAME=x\n")
    bad = isobox("run", "--rm", "--env-file", str(env_file), base, "true", check=False)
    assert bad.returncode == 125
    assert bad.stderr.decode() == (f"isobox: {env_file}:2: variable 'BAD NAME' contains "
                                   "whitespaces\n")
    env_file.write_bytes(b"=x\n")
    bad = isobox("run", "--rm", "--env-file", str(env_file), base, "true", check=False)
    assert bad.returncode == 125 and f"{env_file}:1: no variable name" in bad.stderr.decode()
    assert nothing_made()


def test_cidfile_platform_and_names_resolution(base: str, tmp_path: Path) -> None:
    cidfile = tmp_path / "cid"
    proc = isobox("run", "--rm", "--cidfile", str(cidfile), "--platform", "linux/amd64",
                  "--add-host", "db.test:10.1.2.3", "--dns", "10.0.0.53", base, "sh", "-c",
                  "grep db.test /etc/hosts; grep nameserver /etc/resolv.conf")
    assert proc.stdout.decode().split("\n")[:2] == ["10.1.2.3\tdb.test", "nameserver 10.0.0.53"]
    assert re.fullmatch(r"[0-9a-f]{64}", cidfile.read_text())
    again = isobox("run", "--rm", "--cidfile", str(cidfile), base, "true", check=False)
    assert again.returncode == 125 and "container ID file found" in again.stderr.decode()
    other = isobox("run", "--rm", "--platform", "linux/s390x", base, "true", check=False)
    assert other.returncode == 125 and len(other.stderr.splitlines()) == 1
    assert b"'linux/s390x' is not this host's" in other.stderr
    assert nothing_made()


@pytest.mark.parametrize("args, message", [
    (["-e", "=x"], "invalid environment entry '=x'"),
    (["-w", "relative/dir"], "'relative/dir' is invalid, it needs to be an absolute path"),
    (["--cpus", "abc"], "invalid argument 'abc'"),
    (["--sysctl", "kernel.hostname=x"], "'kernel.hostname' is not allowed"),
    (["--restart", "sometimes"], "invalid restart policy 'sometimes'"),
    (["--restart", "always", "--rm"], "conflicting options: --restart and --rm"),
    (["--health-interval", "soon"], "invalid duration 'soon'"),
    (["--no-healthcheck", "--health-cmd", "true"], "--no-healthcheck conflicts"),
    (["--device", "/dev/loop-control:dev"], "paths must be absolute"),
    (["--add-host", "x:notanip"], "invalid IP address in add-host"),
    (["--expose", "70000"], "invalid range format for --expose"),
])
def test_bad_input_is_one_line_and_125(base: str, args: list[str], message: str) -> None:
    for verb in ("run", "create"):
        proc = isobox(verb, *args, base, "true", check=False)
        assert proc.returncode == 125, proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and message.encode() in proc.stderr
        assert b"usage:" not in proc.stderr
    assert nothing_made()


# --------------------------------------------------------------------------- parity with docker

@pytest.fixture
def docker_base(base: str, tmp_path: Path):
    """Our busybox image loaded into dockerd under a tag of this test, removed after."""
    if not docker_available():
        pytest.skip("no Docker daemon answers")
    tag = f"isobox-runflags/busybox:{tmp_path.name[-20:].lower().replace('_', '-')}"
    isobox("tag", base, tag)
    archive = tmp_path / "image.tar"
    isobox("save", "-o", str(archive), tag)
    subprocess.run(["docker", "load", "-i", str(archive)], check=True, capture_output=True)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], check=False, capture_output=True)


PARITY = [
    (["--cap-add", "NET_ADMIN", "--cap-drop", "chown"], "grep CapEff /proc/self/status"),
    (["--cap-drop", "ALL", "--cap-add", "KILL", "--cap-add", "net_raw"],
     "grep CapEff /proc/self/status"),
    (["--privileged"], "grep -E 'CapEff|Seccomp:' /proc/self/status; ls /dev/loop-control"),
    (["--add-host", "db.test:10.1.2.3"], "grep db.test /etc/hosts"),
    (["--dns", "10.0.0.53", "--dns-search", "corp.test", "--dns-option", "ndots:2"],
     "grep -E '^(nameserver|search|options)' /etc/resolv.conf"),
    (["--shm-size", "16m"], "df -k /dev/shm | tail -1 | awk '{print $2}'"),
    (["--sysctl", "kernel.shmmax=123456789", "--sysctl", "net.ipv4.ip_forward=1"],
     "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward"),
    (["--device", "/dev/loop-control:/dev/lc"], "head -c0 < /dev/lc && echo opened"),
    (["--cap-add", "NOPE"], None),
    (["--sysctl", "vm.swappiness=1"], None),
]


@pytest.mark.parametrize("flags, script", PARITY, ids=[" ".join(f) for f, _ in PARITY])
def test_same_as_docker(docker_base: str, flags: list[str], script: str | None) -> None:
    argv = ["run", "--rm", *flags, docker_base, "sh", "-c", script or "true"]
    ours = isobox(*argv, check=False)
    theirs = subprocess.run(["docker", *argv], capture_output=True, check=False, timeout=60)
    if b"unable to apply caps" in theirs.stderr and ours.returncode == 0:
        pytest.skip("dockerd asks for capabilities this host withholds (we give what it has)")
    assert ours.returncode == theirs.returncode, (ours.stderr, theirs.stderr)
    if script is not None:
        assert ours.stdout == theirs.stdout
    assert nothing_made()


def _inspect_until(cid: str, done, what: str) -> dict:
    import time

    deadline = time.monotonic() + 60
    while True:
        doc = json.loads(isobox("inspect", cid).stdout)[0]
        if done(doc):
            return doc
        assert time.monotonic() < deadline, \
            f"waited for {what}: {doc['State']}, RestartCount {doc.get('RestartCount')}"


def test_restart_and_health_in_inspect(base: str) -> None:
    try:
        isobox("run", "-d", "--name", "restarts", "--restart", "on-failure:2", base, "sh", "-c",
               "exit 3")
        doc = _inspect_until("restarts", lambda d: d["RestartCount"] == 2
                             and d["State"]["Status"] == "exited", "two restarts")
        assert doc["HostConfig"]["RestartPolicy"] == {"Name": "on-failure",
                                                      "MaximumRetryCount": 2}
        isobox("run", "-d", "--name", "checked", "--health-cmd", "echo ok",
               "--health-interval", "200ms", "--health-retries", "1", base, "sleep", "600")
        doc = _inspect_until("checked", lambda d: d["State"].get("Health", {}).get("Status")
                             == "healthy", "healthy")
        assert doc["State"]["Health"]["Log"][-1]["Output"] == "ok\n"
        assert doc["Config"]["Healthcheck"]["Interval"] == 200_000_000
    finally:
        rm = isobox("rm", "-f", "restarts", "checked", check=False)
    assert nothing_made(), (rm, isobox("ps", "-a").stdout.decode())
