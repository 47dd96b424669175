"""Events: the native engine's journal through `GET /events` (docker-py, the docker CLI)
and `isobox events` (--since, --until, --filter, --format, following)."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.server.conftest import SERVE_IMAGE

docker = pytest.importorskip("docker")


def _actions(events: list[dict], kind: str = "container") -> list[str]:
    return [e["Action"] for e in events if e["Type"] == kind]


def test_events_history_and_filters_through_docker_py(served: str) -> None:
    client = docker.DockerClient(base_url=served, timeout=60)
    try:
        since = time.time()
        with pytest.raises(docker.errors.ContainerError):  # exit 7; removed all the same
            client.containers.run(SERVE_IMAGE, ["sh", "-c", "exit 7"], name="ev1", remove=True)
        net = client.networks.create("ev-net")
        net.remove()
        until = time.time()
        everything = list(client.events(since=since, until=until, decode=True))
        mine = [e for e in everything if e["Actor"]["Attributes"].get("name") == "ev1"]
        assert _actions(mine) == ["create", "start", "die", "destroy"]
        die = mine[2]
        assert die["Actor"]["Attributes"]["exitCode"] == "7"
        assert die["status"] == "die" and die["from"] == SERVE_IMAGE and die["scope"] == "local"
        assert _actions(everything, "network") == ["create", "destroy"]
        only = list(client.events(since=since, until=until, decode=True,
                                  filters={"type": "network", "event": "destroy"}))
        assert [(e["Type"], e["Action"], e["Actor"]["Attributes"]["name"]) for e in only] \
            == [("network", "destroy", "ev-net")]
        assert list(client.events(since=since, until=until, decode=True,
                                  filters={"container": "no-such"})) == []
        # (docker-py swallows an events error: the request by hand)
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(served.removeprefix("unix://"))
        sock.sendall(b'GET /events?until=1&filters={"bogus":["1"]} HTTP/1.1\r\nHost: x\r\n'
                     b"Connection: close\r\n\r\n")
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
        sock.close()
        assert answer.startswith(b"HTTP/1.1 400")
        assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {
            "message": "invalid filter 'bogus'"}
    finally:
        client.close()


def test_events_follow_new_ones_as_they_happen(served: str) -> None:
    client = docker.DockerClient(base_url=served, timeout=60)
    stream = client.events(decode=True, filters={"type": "container"})
    try:
        c = client.containers.run(SERVE_IMAGE, ["true"], detach=True, name="ev-follow")
        c.wait()
        c.remove()
        seen = []
        for event in stream:
            seen.append(event["Action"])
            if event["Action"] == "destroy":
                break
        assert seen == ["create", "start", "die", "destroy"]
    finally:
        stream.close()
        client.close()


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")
def test_docker_cli_events_since_until(served: str) -> None:
    env = {**os.environ, "DOCKER_HOST": served, "DOCKER_CONFIG": "/nonexistent-isobox"}
    since = f"{time.time():.3f}"
    subprocess.run(["docker", "run", "--rm", "--name", "ev-cli", SERVE_IMAGE, "true"],
                   env=env, check=True, capture_output=True, timeout=60)
    done = subprocess.run(["docker", "events", "--since", since, "--until", f"{time.time():.3f}",
                           "--filter", "container=ev-cli", "--format",
                           "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"],
                          env=env, check=True, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["container create ev-cli", "container start ev-cli",
                                        "container die ev-cli", "container destroy ev-cli"]


def _isobox(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_isobox.cli", *args],
                          capture_output=True, text=True, timeout=120, check=False, **kw)


def test_isobox_events_since_until_filter_format(isobox_home: Path, busybox_rootfs: Path
                                                 ) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (the native engine, rootful)")
    since = time.time()
    assert _isobox("import", str(busybox_rootfs), SERVE_IMAGE).returncode == 0
    assert _isobox("run", "--rm", "--name", "ev-verb", SERVE_IMAGE, "sh", "-c", "exit 2"
                   ).returncode == 2
    assert _isobox("volume", "create", "ev-vol").returncode == 0
    until = time.time()
    assert _isobox("volume", "rm", "ev-vol").returncode == 0  # after --until: not shown
    window = ("--since", f"{since}", "--until", f"{until}")
    lines = _isobox("events", *window, "--filter", "type=container", "--format",
                    "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}"
                    ).stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["create", "start", "die", "destroy"]
    assert lines[2] == "die ev-verb 2"
    default = _isobox("events", *window, "--filter", "type=volume").stdout.splitlines()
    assert len(default) == 1 and " volume create ev-vol (driver=local)" in default[0]
    assert default[0][:4].isdigit() and default[0][19] == "."  # 2026-12-03T13:17:22.9...Z
    as_json = _isobox("events", *window, "--format", "json", "--filter", "image=" + SERVE_IMAGE,
                      "--filter", "event=die").stdout.splitlines()
    assert [json.loads(ln)["Actor"]["Attributes"]["exitCode"] for ln in as_json] == ["2"]
    bad = _isobox("events", "--since", "yesterday-ish")
    assert bad.returncode != 0 and "invalid time 'yesterday-ish'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_isobox_events_follows(isobox_home: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (the native engine, rootful)")
    follower = subprocess.Popen([sys.executable, "-m", "pytest_isobox.cli", "events",
                                 "--filter", "type=volume", "--format", "{{.Action}} {{.Actor.ID}}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the follower reads only what comes after it opened the journal: make volumes until
        # it reports one (its start races with the first), then check it reports in order
        deadline = time.monotonic() + 60
        made = 0
        first = None
        while first is None:
            assert time.monotonic() < deadline, follower.stderr.read() if follower.poll() else ""
            made += 1
            assert _isobox("volume", "create", f"ev-follow-{made}").returncode == 0
            if select.select([follower.stdout], [], [], 0.5)[0]:
                first = follower.stdout.readline()
        assert first.startswith("create ev-follow-")
        assert _isobox("volume", "rm", first.split()[1]).returncode == 0
        for line in iter(follower.stdout.readline, ""):
            if line.startswith("destroy"):
                assert line == f"destroy {first.split()[1]}\n"
                break
    finally:
        follower.terminate()
        follower.wait(timeout=30)
        for n in range(1, made + 1):
            _isobox("volume", "rm", f"ev-follow-{n}")
