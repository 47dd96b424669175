"""Fixtures for DockerEngine tests against the real daemon; everything made here is removed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.docker.engine import DockerEngine
from pytest_isobox.engine import ContainerSpec, ContainerState, IsoboxError
from tests.conftest import docker_available


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    if not docker_available():
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
