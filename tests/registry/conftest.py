"""Fixtures: a plain docker-registry on loopback for the session, images to push to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.images.store import ImageStore
from tests.registry.servers import Registry, have_registry

pytestmark = pytest.mark.skipif(not have_registry(), reason="docker-registry is not installed")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry on 127.0.0.1:<free port>, plain http, no auth."""
    if not have_registry():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    server = Registry(tmp_path_factory.mktemp("registry")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private DOCKER_CONFIG, so no test reads or writes the user's credentials."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    monkeypatch.delenv("ISOBOX_OFFLINE", raising=False)  # these tests reach loopback only
    return folder


@pytest.fixture
def store(isobox_home: Path, docker_config: Path) -> ImageStore:
    return ImageStore(isobox_home)


@pytest.fixture
def two_layer_image(store: ImageStore, busybox_rootfs: Path, tmp_path: Path) -> str:
    """busybox plus a layer with /data/hello.txt; Cmd prints it. Returns the image id."""
    base = store.import_rootfs(busybox_rootfs, None)
    upper = tmp_path / "upper"
    (upper / "data").mkdir(parents=True)
    (upper / "data" / "hello.txt").write_text("hello from the registry\n")
    return store.commit(base, upper, {"Cmd": ["cat", "/data/hello.txt"]},
                        "RUN echo hello > /data/hello.txt")
