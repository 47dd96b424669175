"""Archives written by a real third-party producer, skopeo (Debian's package), load and run.

`skopeo copy` reads our store's OCI layout (`$ISOBOX_HOME/oci`, the tagged images) and writes
the two archive layouts other tools make: `oci-archive:` (a bare OCI layout, gzip layers,
no manifest.json) and `docker-archive:` (Docker's legacy layout, layers as symlinks). Loading
either into another store must give the same image id, tag and files, and a container of it
the same output. Skipped when skopeo is not installed (`apt-get install skopeo`).
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec
from pytest_isobox.images.store import ImageStore
from pytest_isobox.native.engine import NativeEngine
from tests.conftest import needs_root

pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")]

NAME = "example.com/isobox/skopeo-test:v2"


def _skopeo_copy(source: str, dest: str) -> None:
    done = subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", source, dest],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, f"skopeo copy {source} {dest}: {done.stderr.strip()}"


@pytest.fixture
def made(store: ImageStore, busybox_image: str, tmp_path: Path) -> str:
    """An image of two layers (busybox, then /data/hello.txt), tagged NAME."""
    upper = tmp_path / "upper"
    (upper / "data").mkdir(parents=True)
    (upper / "data" / "hello.txt").write_text("hello world\n")
    image = store.commit(busybox_image, upper, {"Cmd": ["cat", "/data/hello.txt"]},
                         "RUN echo hello world > /data/hello.txt")
    store.tag(image, NAME)
    return image


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_an_archive_skopeo_writes_loads_and_runs(store: ImageStore, made: str, tmp_path: Path,
                                                 isobox_home: Path, transport: str) -> None:
    archive = tmp_path / f"{transport}.tar"
    # our store's OCI layout names NAME by its tag in org.opencontainers.image.ref.name
    _skopeo_copy(f"oci:{isobox_home / 'oci'}:v2", f"{transport}:{archive}:{NAME}")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert ("manifest.json" in names) == (transport == "docker-archive")  # two real layouts
    assert ("index.json" in names) == (transport == "oci-archive")

    engine = NativeEngine(home=tmp_path / "other-home")
    try:
        assert engine.load_images(archive) == [NAME]
        loaded = engine.image_inspect(NAME)
        assert loaded.id == made  # the same config bytes, so the same id
        assert loaded.config["rootfs"] == store.resolve(made).config["rootfs"]
        state = engine.create(ContainerSpec(image=NAME, network_mode="none"))
        try:
            engine.start(state.id)
            code = engine.wait(state.id, timeout=30)
            output = b"".join(chunk for _, chunk in engine.logs(state.id)).decode()
        finally:
            engine.remove(state.id, force=True)
        assert (code, output) == (0, "hello world\n")
        engine.images_store.verify(NAME)
    finally:
        engine.close()
