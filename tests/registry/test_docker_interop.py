"""isobox and the real Docker CLI through one registry on loopback: what `docker push` put
there isobox pulls and runs, what isobox pushed `docker pull` and `docker run` take, and the
docker engine's verbs on the CLI (`isobox --engine docker pull/push`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.docker.engine import DockerEngine
from pytest_isobox.images.store import ImageStore
from tests.conftest import needs_docker, needs_root
from tests.registry.servers import Registry

pytestmark = [needs_docker, needs_root]


def _docker(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr.strip()}"
    return done


def _isobox(*args: str, home: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pytest_isobox.cli", *args],
                          env={**os.environ, "ISOBOX_HOME": str(home)}, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, f"isobox {' '.join(args)}: {done.stderr.strip()}"
    return done


@pytest.fixture
def on_daemon(docker_config: Path) -> Iterator[list[str]]:
    """Image references the test puts on the daemon (docker pull, import), removed after."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)


def _layers(ref: str) -> list[str]:
    doc = json.loads(_docker("image", "inspect", ref).stdout)[0]
    return list(doc["RootFS"]["Layers"])


def test_what_docker_pushed_isobox_pulls_and_runs(registry: Registry, busybox_rootfs: Path,
                                                  on_daemon: list[str], tmp_path: Path) -> None:
    ref = f"{registry.netloc}/interop/from-docker:{uuid.uuid4().hex[:8]}"
    on_daemon.append(ref)
    with DockerEngine() as engine:
        engine.import_rootfs(busybox_rootfs, ref)
    _docker("push", ref)  # the real client, Docker schema 2 manifest
    home = tmp_path / "home"
    assert _isobox("pull", "-q", ref, home=home).stdout.strip() == ref
    image = ImageStore(home).resolve(ref)
    assert image.diff_ids == _layers(ref)  # the same layer, byte for byte
    done = _isobox("run", "--rm", ref, "sh", "-c", "echo from docker; cat /etc/hostname",
                   home=home)
    assert done.stdout.splitlines()[0] == "from docker"


def test_what_isobox_pushed_docker_pulls_and_runs(store: ImageStore, two_layer_image: str,
                                                  registry: Registry, on_daemon: list[str],
                                                  isobox_home: Path) -> None:
    """In chunks (PATCH), then to a second repository (its blobs mounted from the first):
    docker pulls and runs both."""
    unique = uuid.uuid4().hex[:8]
    chunked = f"{registry.netloc}/interop/chunked-{unique}:1"
    on_daemon.append(chunked)
    store.tag(two_layer_image, chunked)
    store.push(chunked, chunk_size=256 * 1024)
    log = registry.log_path.read_text(errors="replace")
    assert log.count(f'"PATCH /v2/interop/chunked-{unique}/blobs/uploads/') >= 4
    _docker("pull", "-q", chunked)
    assert _layers(chunked) == store.resolve(chunked).diff_ids
    assert _docker("run", "--rm", chunked).stdout == "hello from the registry\n"  # its Cmd
    ref = f"{registry.netloc}/interop/from-isobox-{unique}:1"
    on_daemon.append(ref)
    store.tag(two_layer_image, ref)
    _isobox("push", "-q", ref, home=isobox_home)
    mounts = [line for line in registry.log_path.read_text(errors="replace").splitlines()
              if f'"POST /v2/interop/from-isobox-{unique}/blobs/uploads/?' in line
              and "mount=" in line and '" 201 ' in line]
    assert len(mounts) == len(store.resolve(ref).diff_ids) + 1  # every layer and the config
    _docker("pull", "-q", ref)
    assert _docker("run", "--rm", ref).stdout == "hello from the registry\n"


def test_the_docker_engine_on_the_cli(registry: Registry, busybox_rootfs: Path,
                                      on_daemon: list[str], tmp_path: Path) -> None:
    ref = f"{registry.netloc}/interop/cli:{uuid.uuid4().hex[:8]}"
    on_daemon.append(ref)
    with DockerEngine() as engine:
        engine.import_rootfs(busybox_rootfs, ref)
    pushed = _isobox("--engine", "docker", "push", "-q", ref, home=tmp_path)
    assert pushed.stdout.startswith(f"{ref}: digest: sha256:")
    _docker("rmi", ref)
    assert _isobox("--engine", "docker", "pull", "-q", ref, home=tmp_path).stdout.strip() == ref
    assert _docker("run", "--rm", ref, "echo", "ok").stdout == "ok\n"
    done = subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "--engine", "docker",
                           "push", "--chunk-size", "1m", ref], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        ("isobox: push --chunk-size: not supported by the docker engine (the daemon chooses "
         "how it uploads)")]
