"""Issue 12, docker engine: a process using DockerEngine killed with SIGKILL leaves none of its
containers or networks on the daemon within 10 s (its watchdog removes them by the owner's
label; no helper image), while its persistent container and another live owner's stay.

The daemon is the local one, or with ISOBOX_TEST_DOCKER_TARGET=remote a dockerd in a network
namespace over TLS (tests/docker's fixtures), reached over the same transport.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from pytest_isobox.docker.client import DockerClient
from pytest_isobox.docker.ownership import OWNER_LABEL, PERSISTENT_LABEL
from tests.conftest import REPO
from tests.docker.conftest import (  # noqa: F401 - fixtures
    busybox_image,
    docker_engine,
    podman_socket,
    remote_daemon_host,
    remote_daemons,
)
from tests.reaper.conftest import CLEANUP_LIMIT, RESULTS, SEED

OWNER = """
import sys, uuid
from pytest_isobox.docker.engine import DockerEngine
from pytest_isobox.engine import ContainerSpec, PortSpec
image = sys.argv[1]
engine = DockerEngine()
print(engine.owner.label, flush=True)
net = engine.network_create("isobox-reaper-" + uuid.uuid4().hex[:8])
print("net", flush=True)
kept = engine.run(ContainerSpec(image=image, command=["sleep", "300"], persistent=True,
                                network_mode="none"))
print("kept", kept.id, flush=True)
for _ in range(2):
    engine.run(ContainerSpec(image=image, command=["sleep", "300"], network_mode=net.name,
                             ports=[PortSpec(80)]))
print("box", flush=True)
sys.stdin.read()
"""


def owned(client: DockerClient, label: str, *, persistent: bool) -> list[str]:
    """The owner's containers and networks on the daemon, persistent ones or the others."""
    filters = json.dumps({"label": [f"{OWNER_LABEL}={label}"]})
    found = []
    for kind, listing in (("container", "/containers/json"), ("network", "/networks")):
        for doc in client.get_json(listing, {"all": True, "filters": filters}) or []:
            if ((doc.get("Labels") or {}).get(PERSISTENT_LABEL) == "1") == persistent:
                found.append(f"{kind}s/{doc['Id']}")
    return found


@pytest.mark.parametrize("after", ["net", "box"])
def test_docker_owner_killed(after, docker_engine, busybox_image, rng, request):  # noqa: F811
    client = DockerClient(docker_engine.client.address)  # a plain client: no sweep
    proc = subprocess.Popen([sys.executable, "-c", OWNER, busybox_image], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    label = ""
    try:
        label = proc.stdout.readline().strip()
        assert label, "the owner process failed to open the engine"
        while (line := proc.stdout.readline()) and not line.startswith(after):
            pass
        assert line, "the owner process ended early"
        delay = rng.uniform(0.0, 0.3)
        time.sleep(delay)  # the drawn kill moment (the owner goes on creating meanwhile)
        watchdogs = [c for c in psutil.Process(proc.pid).children()
                     if c.name() == "isobox-watchdog"]
        assert len(watchdogs) == 1  # (another run's sweep could remove the rest: not it)
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait()
        while left := owned(client, label, persistent=False):
            elapsed = time.monotonic() - killed
            assert elapsed < CLEANUP_LIMIT, f"seed {SEED}: after {elapsed:.1f} s left: {left}"
            time.sleep(0.05)
        elapsed = time.monotonic() - killed
        assert psutil.wait_procs(watchdogs, timeout=CLEANUP_LIMIT)[1] == []  # done: it exits
        RESULTS.append((request.node.name, f"docker/{after}+{delay:.3f}s", elapsed))
        print(f"seed {SEED}: docker owner killed after {after}+{delay:.3f}s; "
              f"cleaned up in {elapsed:.2f} s")
        if after == "box":  # made before the kill: persistent, it outlives its owner
            kept = owned(client, label, persistent=True)
            assert len(kept) == 1 and client.get_json(f"/{kept[0]}/json")["State"]["Running"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for kept in owned(client, label, persistent=True) if label else []:
            client.request("DELETE", f"/{kept}", {"force": True})
        client.close()
