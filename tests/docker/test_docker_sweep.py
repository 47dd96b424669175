"""The sweep: what a killed owner left in Docker goes, live owners and persistent objects stay."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest

from pytest_isobox.docker.engine import DockerEngine
from pytest_isobox.engine import ContainerNotFound, ContainerSpec, NetworkNotFound
from tests.conftest import REPO, needs_docker
from tests.docker.conftest import Made

pytestmark = needs_docker

_OWNER_THEN_KILL_9 = textwrap.dedent("""
    import os, sys
    from pytest_isobox.docker.engine import DockerEngine
    from pytest_isobox.engine import ContainerSpec
    image, doomed, kept, net = sys.argv[1:]
    engine = DockerEngine()
    engine.network_create(net)
    engine.run(ContainerSpec(image=image, command=["sleep", "300"], name=doomed, network_mode=net))
    engine.run(ContainerSpec(image=image, command=["sleep", "300"], name=kept, persistent=True))
    os.kill(engine._watchdog.pid, 9)  # killed too: the next engine's sweep is the safety net
    os.waitpid(engine._watchdog.pid, 0)
    os.kill(os.getpid(), 9)
""")


def test_containers_and_networks_of_a_killed_owner_are_swept(made: Made) -> None:
    tag = uuid.uuid4().hex[:10]
    doomed, kept, net = (f"isobox-test-{what}-{tag}" for what in ("doomed", "kept", "net"))
    made.containers += [doomed, kept]
    made.networks.append(net)
    alive = made.run(["sleep", "300"])
    child = subprocess.run(
        [sys.executable, "-c", _OWNER_THEN_KILL_9, made.image, doomed, kept, net],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    assert made.engine.state(doomed).running  # the owner died, its container did not (yet)

    fresh = DockerEngine()
    try:
        assert f"container {doomed}" in fresh.swept
        assert f"network {net}" in fresh.swept
    finally:
        fresh.close()
    with pytest.raises(ContainerNotFound):
        made.engine.state(doomed)
    with pytest.raises(NetworkNotFound):
        made.engine.network_inspect(net)
    assert made.engine.state(kept).running  # persistent: outlives its owner
    assert made.engine.state(alive.id).running  # a live owner's container is never touched
    assert not any(alive.name in item for item in fresh.swept)


def test_objects_without_our_labels_are_never_swept(made: Made) -> None:
    name = f"isobox-test-foreign-{uuid.uuid4().hex[:10]}"
    made.containers.append(name)
    # made by someone else: the Docker CLI, with no owner label
    subprocess.run(["docker", "create", "--name", name, made.image, "true"], check=True,
                   capture_output=True)
    fresh = DockerEngine()
    fresh.close()
    assert made.engine.state(name).status == "created"


def test_close_removes_only_this_engines_non_persistent_containers(made: Made) -> None:
    tag = uuid.uuid4().hex[:10]
    temporary, kept = f"isobox-test-temp-{tag}", f"isobox-test-kept-{tag}"
    made.containers += [temporary, kept]
    other = made.run(["sleep", "300"])  # made by another engine (the session's)
    with DockerEngine() as engine:
        engine.run(ContainerSpec(image=made.image, command=["sleep", "300"], name=temporary))
        engine.run(ContainerSpec(image=made.image, command=["sleep", "300"], name=kept,
                                 persistent=True))
    with pytest.raises(ContainerNotFound):
        made.engine.state(temporary)
    assert made.engine.state(kept).running
    assert made.engine.state(other.id).running
