"""Issue 12, pulls: `isobox pull` killed with SIGKILL while a layer is being fetched (or
`isobox run` of a pulled image while its layer is unpacked) leaves nothing half-written visible (no tag, no image) and its temp names go within
10 s, with no next run (the run reaper of the killed process removes them)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from pytest_isobox.images.store import ImageStore
from tests.conftest import needs_root
from tests.reaper.conftest import RunThings, isobox_argv, kill_and_measure, start, wait_for
from tests.registry.conftest import docker_config, registry  # noqa: F401 - fixtures
from tests.registry.servers import have_registry

pytestmark = [needs_root,
              pytest.mark.skipif(not have_registry(), reason="docker-registry is not installed")]


@pytest.fixture
def pushed(registry, docker_config, busybox_rootfs: Path, tmp_path: Path) -> str:  # noqa: F811
    """An image with a 24 MB incompressible layer, pushed to the registry on loopback."""
    store = ImageStore(tmp_path / "pusher")
    base = store.import_rootfs(busybox_rootfs, None)
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "noise").write_bytes(os.urandom(24 << 20))
    image = store.commit(base, upper, {"Cmd": ["true"]}, "ADD noise /noise")
    ref = f"{registry.netloc}/isobox/reaper-noise:{os.getpid()}"
    store.tag(image, ref)
    store.push(ref)
    return ref


@pytest.mark.parametrize("stage", ["blob", "layer"])
def test_pull_killed_mid_layer(stage, pushed, rng, tmp_path, request):
    home = tmp_path / "home"
    verb = ["pull", pushed] if stage == "blob" else ["run", "--rm", pushed]  # run: unpacks
    proc = start(isobox_argv(*verb), tmp_path, {"ISOBOX_HOME": str(home),
                                                 "DOCKER_CONFIG": os.environ["DOCKER_CONFIG"]})
    things = RunThings(home)
    suffix = f".{stage}"

    def in_flight() -> bool:
        try:
            return any(n.startswith(f"{proc.pid}-") and n.endswith(suffix)
                       for n in os.listdir(home / "tmp"))
        except FileNotFoundError:
            return False

    wait_for(in_flight, f"a {stage} being written", proc)
    delay = rng.uniform(0.0, 0.02)
    with contextlib.suppress(subprocess.TimeoutExpired):  # still pulling, as wanted
        proc.wait(timeout=delay)
        pytest.skip("the pull ended before its kill point")
    kill_and_measure(proc, things, f"isobox pull/{stage}+{delay:.3f}s", request)
    assert not [n for n in os.listdir(home / "tmp") if n.startswith(f"{proc.pid}-")]
    tags = json.loads((home / "tags.json").read_text()) if (home / "tags.json").exists() else {}
    assert stage == "layer" or pushed not in tags  # nothing half-pulled is visible
    layers = list((home / "layers").iterdir()) if (home / "layers").exists() else []
    assert all((layer / "layer.json").exists() for layer in layers)  # each one whole or absent
    assert not list(Path(tempfile.gettempdir()).glob(f"isobox-run-{proc.pid}-*"))
