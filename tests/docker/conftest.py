"""Fixtures for DockerEngine tests against a real daemon; everything made here is removed.

Which daemon: the local one (default), or with ISOBOX_TEST_DOCKER_TARGET=remote a "remote"
dockerd in a network namespace over TLS (remote_daemon.py), or =podman Podman's
Docker-compatible service on a socket (podman_service.py). For the remote target the
session's DOCKER_HOST/DOCKER_TLS_VERIFY/DOCKER_CERT_PATH point at it, as a user would set.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.docker.engine import DockerEngine
from pytest_isobox.engine import ContainerSpec, ContainerState, IsoboxError
from tests.conftest import docker_available
from tests.docker import podman_service, remote_daemon

TARGET = os.environ.get("ISOBOX_TEST_DOCKER_TARGET", "local")


def podman_differs(why: str) -> pytest.MarkDecorator:
    """A difference of Podman's service that isobox does not bridge (listed in the README):
    an expected failure there, strict so that a Podman that behaves shows up."""
    return pytest.mark.xfail(TARGET == "podman", reason=f"Podman: {why}", strict=True)


@pytest.fixture(scope="session")
def remote_daemons() -> Iterator[list[remote_daemon.RemoteDaemon]]:
    """Two "remote" Docker hosts (own netns, veth, TLS), stopped and removed at the end."""
    missing = [t for t in ("dockerd", "openssl", "unshare", "nsenter", "ip")
               if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"remote dockerd needs root and {', '.join(missing) or 'root'}")
    daemons = remote_daemon.start(2)
    try:
        yield daemons
    finally:
        for daemon in daemons:
            remote_daemon.stop(daemon)


@pytest.fixture(scope="session")
def remote_daemon_host(remote_daemons: list[remote_daemon.RemoteDaemon]
                       ) -> remote_daemon.RemoteDaemon:
    return remote_daemons[0]


@pytest.fixture(scope="session")
def podman_socket() -> Iterator[str]:
    """unix:// address of Podman's Docker-compatible service, started for this session."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    service = podman_service.start()
    try:
        yield service.url
    finally:
        podman_service.stop(service)


@pytest.fixture(scope="session")
def docker_engine(request: pytest.FixtureRequest) -> Iterator[DockerEngine]:
    with pytest.MonkeyPatch.context() as env:
        if TARGET == "remote":
            daemon = request.getfixturevalue("remote_daemon_host")
            for key, value in daemon.env().items():
                env.setenv(key, value)
        elif TARGET == "podman":
            service = request.getfixturevalue("podman_socket")
            env.setenv("DOCKER_HOST", service)
        elif not docker_available():
            pytest.skip("no Docker daemon answers")
        engine = DockerEngine()
        yield engine
        engine.close()


@pytest.fixture(scope="session")
def busybox_image(docker_engine: DockerEngine, busybox_rootfs: Path) -> Iterator[str]:
    """The busybox rootfs imported into Docker under a tag of this session only."""
    ref = f"isobox-test/busybox:{uuid.uuid4().hex[:10]}"
    docker_engine.import_rootfs(busybox_rootfs, ref)
    yield ref
    docker_engine.remove_image(ref, force=True)


class Made:
    """What one test made in Docker, removed at teardown whatever the outcome."""

    def __init__(self, engine: DockerEngine, image: str) -> None:
        self.engine = engine
        self.image = image
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.volumes: list[str] = []
        self.images: list[str] = []

    def run(self, command: list[str], **fields: object) -> ContainerState:
        spec = ContainerSpec(image=str(fields.pop("image", self.image)), command=command,
                             **fields)  # type: ignore[arg-type]
        if spec.name is None:
            spec.name = f"isobox-test-{uuid.uuid4().hex[:10]}"
        self.containers.append(spec.name)
        return self.engine.run(spec)

    def network(self, **options: object) -> str:
        name = f"isobox-test-{uuid.uuid4().hex[:10]}"
        self.networks.append(name)
        self.engine.network_create(name, **options)  # type: ignore[arg-type]
        return name

    def cleanup(self) -> None:
        for name in self.containers:
            _quietly(self.engine.remove, name, force=True)
        for name in self.networks:
            _quietly(self.engine.network_remove, name)
        for name in self.volumes:
            _quietly(self.engine.volume_remove, name, force=True)
        for ref in reversed(self.images):
            _quietly(self.engine.remove_image, ref, force=True)


def _quietly(action: object, *args: object, **kwargs: object) -> None:
    try:
        action(*args, **kwargs)  # type: ignore[operator]
    except IsoboxError:  # already gone
        pass


@pytest.fixture
def made(docker_engine: DockerEngine, busybox_image: str) -> Iterator[Made]:
    tracker = Made(docker_engine, busybox_image)
    yield tracker
    tracker.cleanup()
