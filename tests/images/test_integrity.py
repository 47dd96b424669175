"""Damaged, truncated or half-written store entries are detected, repaired or reported; never used."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from pytest_isobox.engine import IsoboxError
from pytest_isobox.images.blobs import CorruptedBlob
from pytest_isobox.images.layers import LayerStore
from pytest_isobox.images.store import ImageStore
from tests.conftest import needs_root

pytestmark = needs_root


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _blob(store: ImageStore, digest: str) -> Path:
    return store.blobs.path(digest)


@pytest.mark.parametrize("damage", [_flip_byte, _truncate])
def test_a_damaged_config_or_manifest_is_reported(store: ImageStore, busybox_image: str,
                                                  damage) -> None:
    manifest = store.resolve(busybox_image).manifest_digest
    damage(_blob(store, busybox_image))
    with pytest.raises(CorruptedBlob, match=busybox_image):
        store.resolve("busybox")
    store.blobs.path(busybox_image).unlink()
    with pytest.raises(CorruptedBlob, match="missing"):
        store.resolve("busybox")
    damage(_blob(store, manifest))
    with pytest.raises(CorruptedBlob):
        store.resolve("busybox")
    assert store.images()[0].config == {}  # still listed, so it can be removed


@pytest.mark.parametrize("damage", [_flip_byte, _truncate])
def test_a_damaged_layer_blob_is_never_unpacked(store: ImageStore, busybox_image: str,
                                                damage, isobox_home: Path) -> None:
    image = store.resolve(busybox_image)
    store.layers.remove(image.chain_ids[0])
    damage(_blob(store, image.diff_ids[0]))
    with pytest.raises(CorruptedBlob, match="damaged or truncated"):
        store.layer_dirs(busybox_image)
    assert store.layers.chain_ids() == []
    assert os.listdir(isobox_home / "tmp") == []


def test_verify_rebuilds_our_own_layer_blob_from_its_unpacked_dir(store: ImageStore,
                                                                   busybox_image: str) -> None:
    diff_id = store.resolve(busybox_image).diff_ids[0]
    _flip_byte(_blob(store, diff_id), 5000)
    with pytest.raises(CorruptedBlob):
        store.blobs.verify(diff_id)
    store.verify(busybox_image)
    store.blobs.verify(diff_id)


def test_verify_reports_a_layer_it_cannot_rebuild(store: ImageStore, busybox_image: str) -> None:
    image = store.resolve(busybox_image)
    store.layers.remove(image.chain_ids[0])
    _truncate(_blob(store, image.diff_ids[0]))
    with pytest.raises(CorruptedBlob, match=image.diff_ids[0]):
        store.verify(busybox_image)


def test_a_damaged_layer_marker_makes_the_layer_be_unpacked_again(store: ImageStore,
                                                                   busybox_image: str) -> None:
    (lower,) = store.layer_dirs(busybox_image)
    marker = lower.parent / "layer.json"
    for garbage in (b"{not json", b"", json.dumps({"chain_id": "sha256:" + "0" * 64}).encode()):
        marker.write_bytes(garbage)
        (lower / "bin" / "busybox").unlink()
        assert store.layer_dirs(busybox_image) == [lower]
        assert (lower / "bin" / "busybox").is_file()
        assert json.loads(marker.read_bytes())["diff_id"] == store.resolve("busybox").diff_ids[0]


def test_a_damaged_tag_index_is_reported_naming_the_file(store: ImageStore, busybox_image: str,
                                                         isobox_home: Path) -> None:
    (isobox_home / "tags.json").write_text("[1, 2")
    with pytest.raises(IsoboxError, match="tags.json: damaged image index"):
        store.resolve("busybox")


def test_an_image_record_a_crash_cut_short_is_reported_and_pruned(
        store: ImageStore, busybox_image: str, isobox_home: Path) -> None:
    # records are not fsynced: a machine crash may leave one empty; it must never be used
    step = store.commit(busybox_image, None, {"Cmd": ["true"]}, "CMD true")
    record = isobox_home / "imagedb" / step.removeprefix("sha256:")
    for garbage in (b"", b'{"manifest": "sha', b"[]"):
        record.write_bytes(garbage)
        with pytest.raises(CorruptedBlob, match="damaged image record"):
            store.resolve(step)
        assert {i.id: i.config for i in store.images()}[step] == {}  # listed, removable
    assert store.prune() > 0
    assert [i.id for i in store.images()] == [busybox_image]
    store.verify("busybox")


def test_a_rewrite_heals_a_damaged_blob(store: ImageStore, busybox_rootfs: Path,
                                        busybox_image: str) -> None:
    diff_id = store.resolve(busybox_image).diff_ids[0]
    _truncate(_blob(store, diff_id))
    store.import_rootfs(busybox_rootfs, "again")
    store.blobs.verify(diff_id)


# ------------------------------------------------------------------ killed processes

def _killed_while_publishing_a_layer(home: str, rootfs: str) -> None:
    def die(self: LayerStore, work: Path, target: Path) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    LayerStore._replace = die  # type: ignore[method-assign]  (in this child process only)
    ImageStore(Path(home)).import_rootfs(rootfs, "half")


def test_a_killed_import_leaves_nothing_half_visible(isobox_home: Path,
                                                     busybox_rootfs: Path) -> None:
    child = multiprocessing.get_context("fork").Process(
        target=_killed_while_publishing_a_layer, args=(str(isobox_home), str(busybox_rootfs)))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    assert os.listdir(isobox_home / "tmp")  # its unpacked layer, never renamed into place
    assert os.listdir(isobox_home / "layers") == []
    store = ImageStore(isobox_home)  # a later run sweeps what the dead process left
    assert os.listdir(isobox_home / "tmp") == []
    assert store.images() == []
    store.import_rootfs(busybox_rootfs, "whole")
    store.verify("whole")


# ------------------------------------------------------------------ many processes at once

def _import_and_commit(home: str, rootfs: str, upper: str, start: multiprocessing.Event,
                       results: multiprocessing.Queue) -> None:
    store = ImageStore(Path(home))
    start.wait()
    base = store.import_rootfs(rootfs, "shared")
    image = store.commit(base, Path(upper), {"Cmd": ["sh"]}, "RUN make")
    results.put((base, image, [str(p) for p in store.layer_dirs(image)]))


def test_concurrent_imports_and_commits_make_one_copy_of_each_layer(
        isobox_home: Path, busybox_rootfs: Path, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "app").mkdir(parents=True)
    (upper / "app" / "out").write_bytes(os.urandom(1 << 20))
    os.mknod(upper / "tmp", 0o020000, os.makedev(0, 0))
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_import_and_commit,
                           args=(str(isobox_home), str(busybox_rootfs), str(upper), start,
                                 results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0] * 4
    assert len({tuple(layers) for _, _, layers in outcomes}) == 1
    store = ImageStore(isobox_home)
    assert len(store.layers.chain_ids()) == 2
    for base, image, _ in outcomes:
        store.verify(base)
        store.verify(image)
    assert {i.id for i in store.images()} == {o[0] for o in outcomes} | {o[1] for o in outcomes}
    assert store.resolve("shared").id in {o[0] for o in outcomes}
    assert os.listdir(isobox_home / "tmp") == []


def test_verify_finds_and_repairs_a_tampered_unpacked_layer(store: ImageStore,
                                                            busybox_image: str,
                                                            tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "motd").write_text("hello\n")
    os.mknod(upper / "etc" / "group", 0o020000, os.makedev(0, 0))
    image_id = store.commit(busybox_image, upper, {}, "step")
    image = store.resolve(image_id)
    base, top = store.layer_dirs(image_id)
    assert store.layers.differences(image.chain_ids[0], image.diff_ids[0]) == []
    assert store.layers.differences(image.chain_ids[1], image.diff_ids[1]) == []
    (top / "etc" / "motd").write_text("tampered\n")
    (top / "etc" / "group").unlink()
    (base / "bin" / "extra").write_text("x")
    assert sorted(store.layers.differences(image.chain_ids[1], image.diff_ids[1])) == [
        "etc/group", "etc/motd"]
    assert store.layers.differences(image.chain_ids[0], image.diff_ids[0]) == ["bin/extra"]
    store.verify(image_id)
    assert (top / "etc" / "motd").read_text() == "hello\n"
    assert os.lstat(top / "etc" / "group").st_rdev == 0 and not (base / "bin" / "extra").exists()
