"""`isobox load` of what a real Docker 25+ daemon's `docker save` writes: the OCI image layout
(index.json, oci-layout, blobs/) with Docker's manifest.json beside it.

Debian 12's docker.io is 20.10 (the legacy layout only, tested in tests/docker). This module
runs Debian 13's dockerd 26 (fetched and unpacked by scripts/install-deps into
/opt/isobox-docker25, or ISOBOX_DOCKERD25) as a second, private daemon: its own socket, data
and exec roots, network and mount namespaces, no bridge, no iptables rules, stopped at the end. An image built by isobox goes
in with `docker load`, comes back out with Docker 26's `docker save`, loads into a fresh isobox
home and runs with the same output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec
from tests.conftest import needs_root

pytestmark = needs_root

DOCKERD = Path(os.environ.get("ISOBOX_DOCKERD25", "/opt/isobox-docker25/usr/sbin/dockerd"))


@pytest.fixture(scope="module")
def docker25(tmp_path_factory: pytest.TempPathFactory):
    """A DockerEngine on a private dockerd >= 25, started here and stopped at the end."""
    if not DOCKERD.exists():
        pytest.skip(f"no Docker 25+ dockerd at {DOCKERD} (scripts/install-deps fetches Debian "
                    "13's; ISOBOX_DOCKERD25 names another)")
    from pytest_isobox.docker.engine import DockerEngine

    root = tmp_path_factory.mktemp("docker25")
    sock = root / "docker.sock"
    with open(root / "dockerd.log", "wb") as log:
        # In network and mount namespaces of its own: with --bridge=none dockerd deletes the
        # host's docker0 (the system daemon's), and whatever it mounts goes with it.
        daemon = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "--",
             str(DOCKERD), "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "-H", f"unix://{sock}", "--pidfile", str(root / "docker.pid"), "--bridge=none",
             "--iptables=false", "--ip6tables=false"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            engine = None
            deadline = time.monotonic() + 60
            while engine is None:
                if daemon.poll() is not None:
                    pytest.fail(f"dockerd 25+ exited: {(root / 'dockerd.log').read_text()[-2000:]}")
                try:
                    candidate = DockerEngine(base_url=f"unix://{sock}")
                    candidate.images()  # answers: ready
                    engine = candidate
                except Exception:  # noqa: BLE001 - not listening yet
                    if time.monotonic() > deadline:
                        pytest.fail(f"dockerd 25+ did not answer within 60 s (see {root})")
                    time.sleep(0.05)  # no event tells when a daemon starts listening
            yield engine
            engine.close()
        finally:
            daemon.terminate()
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            shutil.rmtree(root, ignore_errors=True)


def test_docker25_save_loads_into_isobox_and_runs_the_same(docker25, isobox_home: Path,
                                                           busybox_rootfs: Path,
                                                           tmp_path: Path) -> None:
    from pytest_isobox.native.engine import NativeEngine

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM base25:latest\nRUN mkdir /data && echo hello from a layer > /data/hello.txt\n"
        'CMD ["cat", "/data/hello.txt"]\n')
    ours = tmp_path / "ours.tar"
    with NativeEngine(home=isobox_home) as native:
        native.import_rootfs(busybox_rootfs, "base25:latest")
        built = native.build(context, tag="interop25:v1")
        native.save_images(["interop25:v1"], ours)

    assert docker25.load_images(ours) == ["interop25:v1"] or \
        "interop25:v1" in {t for i in docker25.images() for t in i.tags}
    theirs = tmp_path / "docker25.tar"
    docker25.save_images(["interop25:v1"], theirs)
    with tarfile.open(theirs) as tar:
        names = set(tar.getnames())
    assert {"index.json", "oci-layout", "manifest.json"} <= names  # Docker 25+'s layout

    with NativeEngine(home=tmp_path / "fresh-home") as fresh:
        loaded = fresh.load_images(theirs)
        assert "interop25:v1" in loaded
        assert fresh.image_inspect("interop25:v1").id == built
        state = fresh.run(ContainerSpec(image="interop25:v1", network_mode="none"))
        assert fresh.wait(state.id) == 0
        assert b"".join(d for _, d in fresh.logs(state.id)) == b"hello from a layer\n"
        fresh.remove(state.id)
