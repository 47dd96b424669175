"""Push to and pull from a real docker-registry on loopback, then run what was pulled."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec, ImageNotFound
from pytest_isobox.images.registry.errors import NameUnknown
from pytest_isobox.images.store import ImageStore
from pytest_isobox.native.engine import NativeEngine
from tests.conftest import needs_root
from tests.registry.servers import Registry, free_port

pytestmark = needs_root


def _output(engine: NativeEngine, image: str, cmd: list[str] | None = None) -> bytes:
    state = engine.run(ContainerSpec(image=image, command=cmd))
    try:
        assert engine.wait(state.id, timeout=60) == 0
        return b"".join(chunk for _, chunk in engine.logs(state.id))
    finally:
        engine.remove(state.id, force=True)


def _isobox(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_isobox.cli", *args],
                          env={**os.environ, "ISOBOX_HOME": str(home), **env},
                          capture_output=True, text=True, check=False)


def test_pushed_image_pulls_into_a_fresh_home_and_runs(store: ImageStore, two_layer_image: str,
                                                       registry: Registry,
                                                       tmp_path: Path) -> None:
    ref = f"{registry.netloc}/isobox/hello:1"
    store.tag(two_layer_image, ref)
    digest = store.push(ref)
    engine = NativeEngine(home=tmp_path / "fresh")
    try:
        assert engine.pull(ref) == two_layer_image  # same config: the same image id
        assert engine.images_store.index.tags() == {ref: two_layer_image}
        assert _output(engine, ref) == b"hello from the registry\n"
        # by digest: found locally without a tag, and pullable by digest into another home
        assert engine.images_store.resolve(f"{registry.netloc}/isobox/hello@{digest}").id \
            == two_layer_image
    finally:
        engine.close()
    other = ImageStore(tmp_path / "by-digest")
    assert other.pull(f"{registry.netloc}/isobox/hello@{digest}") == two_layer_image
    assert other.index.tags() == {}  # a digest names no tag, as with docker


def test_run_create_and_from_pull_on_demand(store: ImageStore, two_layer_image: str,
                                            registry: Registry, tmp_path: Path) -> None:
    ref = f"{registry.netloc}/isobox/ondemand:2"
    store.tag(two_layer_image, ref)
    store.push(ref)
    engine = NativeEngine(home=tmp_path / "fresh")
    try:
        assert _output(engine, ref) == b"hello from the registry\n"  # run pulled it
    finally:
        engine.close()
    engine = NativeEngine(home=tmp_path / "fresh-build")
    try:
        context = tmp_path / "ctx"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM {ref}\nRUN echo built >> /data/hello.txt\n")
        built = engine.build(context, tag="built:1")
        assert _output(engine, built) == b"hello from the registry\nbuilt\n"
    finally:
        engine.close()


def test_offline_and_never_do_not_touch_the_network(store: ImageStore, two_layer_image: str,
                                                    registry: Registry, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ref = f"{registry.netloc}/isobox/offline:1"
    store.tag(two_layer_image, ref)
    store.push(ref)
    before = registry.log_path.read_text()
    monkeypatch.setenv("ISOBOX_OFFLINE", "1")
    engine = NativeEngine(home=tmp_path / "fresh")
    try:
        with pytest.raises(ImageNotFound, match=rf"No such image: {ref} \(ISOBOX_OFFLINE=1"):
            engine.create(ContainerSpec(image=ref))
    finally:
        engine.close()
    monkeypatch.delenv("ISOBOX_OFFLINE")
    engine = NativeEngine(home=tmp_path / "fresh", pull="never")
    try:
        with pytest.raises(ImageNotFound, match=rf"No such image: {ref} \(pull policy never"):
            engine.create(ContainerSpec(image=ref))
    finally:
        engine.close()
    assert registry.log_path.read_text() == before  # not one request
    done = _isobox("run", "--rm", ref, home=tmp_path / "cli", ISOBOX_OFFLINE="1")
    assert done.returncode == 125
    assert done.stderr.strip().splitlines() == [
        f"isobox: No such image: {ref} (ISOBOX_OFFLINE=1: not pulling it from its registry)"]


def test_present_blobs_are_never_downloaded_again(store: ImageStore, two_layer_image: str,
                                                  registry: Registry, tmp_path: Path) -> None:
    ref = f"{registry.netloc}/isobox/again:1"
    store.tag(two_layer_image, ref)
    store.push(ref)
    image = store.resolve(ref)
    fresh = ImageStore(tmp_path / "fresh")
    fresh.pull(ref)
    counts = [registry.blob_gets("isobox/again", d) for d in [*image.diff_ids, image.id]]
    assert counts == [1] * len(counts)
    fresh.pull(ref)  # --pull=always: the manifest is asked for, no blob
    store.pull(ref)  # the pushing store has every blob already
    assert [registry.blob_gets("isobox/again", d) for d in [*image.diff_ids, image.id]] == counts


def test_four_processes_pulling_one_image_download_each_blob_once(
        store: ImageStore, two_layer_image: str, registry: Registry, tmp_path: Path) -> None:
    ref = f"{registry.netloc}/isobox/concurrent:1"
    store.tag(two_layer_image, ref)
    store.push(ref)
    image = store.resolve(ref)
    home = tmp_path / "shared-home"
    procs = [subprocess.Popen([sys.executable, "-m", "pytest_isobox.cli", "pull", "-q", ref],
                              env={**os.environ, "ISOBOX_HOME": str(home)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    assert [r[0] for r in results] == [0] * 4, results
    blobs = [*image.diff_ids, image.id]  # every layer and the config
    assert [registry.blob_gets("isobox/concurrent", d) for d in blobs] == [1] * len(blobs)
    assert ImageStore(home).resolve(ref).id == two_layer_image


def test_unknown_names_and_tags_are_one_line_errors(store: ImageStore, two_layer_image: str,
                                                    registry: Registry, tmp_path: Path) -> None:
    ref = f"{registry.netloc}/isobox/known:1"
    store.tag(two_layer_image, ref)
    store.push(ref)
    fresh = ImageStore(tmp_path / "fresh")
    with pytest.raises(NameUnknown, match=rf"registry {registry.netloc}: .*unknown"):
        fresh.pull(f"{registry.netloc}/isobox/nothing-here:1")
    with pytest.raises(NameUnknown, match=rf"registry {registry.netloc}: manifest unknown"):
        fresh.pull(f"{registry.netloc}/isobox/known:2")
    done = _isobox("pull", f"{registry.netloc}/isobox/known:2", home=tmp_path / "cli")
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert fresh.index.tags() == {}


def test_docker_hub_names_come_from_a_mirror(store: ImageStore, two_layer_image: str,
                                             registry: Registry, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """ISOBOX_REGISTRY_MIRRORS (Docker's registry-mirrors): a mirror on loopback serving
    library/ images answers for Docker Hub names (a dead mirror before it is passed over);
    the tag is Docker Hub's familiar name."""
    name = f"isoboxmirror{uuid.uuid4().hex[:8]}"
    store.tag(two_layer_image, f"{registry.netloc}/library/{name}:1")
    store.push(f"{registry.netloc}/library/{name}:1")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: the next mirror answers
    monkeypatch.setenv("ISOBOX_REGISTRY_MIRRORS", f"{dead}, http://{registry.netloc}/")
    fresh = ImageStore(tmp_path / "fresh")
    assert fresh.pull(f"{name}:1") == two_layer_image
    assert fresh.pull(f"docker.io/library/{name}:1") == two_layer_image
    assert fresh.index.tags() == {f"{name}:1": two_layer_image}
    log = registry.log_path.read_text()
    assert log.count(f'"GET /v2/library/{name}/manifests/1 ') == 2


def test_a_second_push_uploads_nothing_the_registry_has(store: ImageStore, two_layer_image: str,
                                                        registry: Registry) -> None:
    """HEAD before each blob: present ones are skipped (no upload begun), the manifest goes."""
    repo = f"isobox/head-{uuid.uuid4().hex[:8]}"
    image = store.resolve(two_layer_image)
    blobs = [*image.diff_ids, image.id]
    store.tag(two_layer_image, f"{registry.netloc}/{repo}:1")
    store.push(f"{registry.netloc}/{repo}:1")
    uploads = registry.served("POST", f"/v2/{repo}/blobs/uploads/")
    assert uploads == len(blobs)  # monolithic: one POST and one PUT per blob
    store.tag(two_layer_image, f"{registry.netloc}/{repo}:2")
    events: list[tuple[str, str]] = []
    digest = store.push(f"{registry.netloc}/{repo}:2",
                        lambda event, blob, done, total: events.append((event, blob)))
    assert events == [("exists", blob) for blob in blobs]
    assert registry.served("POST", f"/v2/{repo}/blobs/uploads/") == uploads
    assert [registry.served("HEAD", f"/v2/{repo}/blobs/{blob}") for blob in blobs] == [1] * len(blobs)
    assert registry.served("PUT", f"/v2/{repo}/manifests/2") == 1
    assert digest == image.manifest_digest
