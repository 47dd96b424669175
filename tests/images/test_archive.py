"""`save` and `load` between stores, in every archive shape we accept."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.images.blobs import CorruptedBlob
from pytest_isobox.images.config import MEDIA_INDEX, go_arch
from pytest_isobox.images.store import ImageStore
from tests.conftest import needs_root

pytestmark = needs_root


@pytest.fixture
def layered(store: ImageStore, busybox_image: str, tmp_path: Path) -> str:
    upper = tmp_path / "upper"
    (upper / "srv").mkdir(parents=True)
    (upper / "srv" / "index.html").write_text("<h1>hi</h1>\n")
    image_id = store.commit(busybox_image, upper, {"Cmd": ["httpd"]}, "COPY index.html /srv/")
    store.tag(image_id, "web:1")
    return image_id


@pytest.fixture
def other_store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "other-home")


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() if m.isfile() else b""
                for m in tar.getmembers()}


def _archive(members: dict[str, bytes], path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _check_loaded(store: ImageStore, original: ImageStore, image_id: str) -> None:
    loaded = store.resolve("web:1")
    assert loaded.id == image_id
    assert loaded.config == original.resolve(image_id).config
    assert (store.layer_dirs("web:1")[-1] / "srv" / "index.html").read_text() == "<h1>hi</h1>\n"


def test_save_then_load_keeps_ids_tags_and_layers(store: ImageStore, other_store: ImageStore,
                                                  layered: str, tmp_path: Path) -> None:
    store.save(["web:1", "busybox"], tmp_path / "both.tar")
    assert sorted(other_store.load(tmp_path / "both.tar")) == ["busybox:latest", "web:1"]
    _check_loaded(other_store, store, layered)
    members = _members((tmp_path / "both.tar").read_bytes())
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(members)
    assert list(tmp_path.glob(".*partial")) == []


def test_saving_by_id_gives_no_tags(store: ImageStore, other_store: ImageStore, layered: str,
                                    tmp_path: Path) -> None:
    store.save([layered[:12]], tmp_path / "id.tar")
    assert other_store.load(tmp_path / "id.tar") == [layered]
    assert other_store.resolve(layered).tags == []


def test_load_of_a_bare_oci_layout_with_gzip_layers(store: ImageStore, other_store: ImageStore,
                                                    layered: str, tmp_path: Path) -> None:
    """What Docker 25+ or skopeo write, minus Docker's legacy files, layers compressed."""
    out = io.BytesIO()
    store.save(["web:1"], out)
    members = _members(out.getvalue())
    del members["manifest.json"], members["repositories"]
    index = json.loads(members["index.json"])
    manifest_name = "blobs/sha256/" + index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads(members[manifest_name])
    for layer in manifest["layers"]:
        old = "blobs/sha256/" + layer["digest"].removeprefix("sha256:")
        packed = gzip.compress(members.pop(old), mtime=0)
        layer["digest"] = "sha256:" + hashlib.sha256(packed).hexdigest()
        layer["size"], layer["mediaType"] = len(packed), layer["mediaType"] + "+gzip"
        members["blobs/sha256/" + layer["digest"].removeprefix("sha256:")] = packed
    new_manifest = json.dumps(manifest).encode()
    del members[manifest_name]
    digest = "sha256:" + hashlib.sha256(new_manifest).hexdigest()
    members["blobs/sha256/" + digest.removeprefix("sha256:")] = new_manifest
    index["manifests"][0].update(digest=digest, size=len(new_manifest))
    members["index.json"] = json.dumps(index).encode()
    assert other_store.load(_archive(members, tmp_path / "oci.tar")) == ["web:1"]
    _check_loaded(other_store, store, layered)


def test_load_of_a_legacy_archive_with_linked_layers(store: ImageStore, other_store: ImageStore,
                                                     layered: str, tmp_path: Path) -> None:
    """Docker 20.10's shape: <id>.json, <layer>/layer.tar, a layer that links to another."""
    image = store.resolve(layered)
    config = store.blobs.read_bytes(layered)
    legacy = tmp_path / "legacy.tar"
    with tarfile.open(legacy, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add(f"{layered[7:]}.json", config)
        layer_names = []
        for n, diff_id in enumerate(image.diff_ids):
            name = f"layer{n}/layer.tar"
            add(name, store.blobs.path(diff_id).read_bytes())
            layer_names.append(name)
        link = tarfile.TarInfo("linked/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../layer0/layer.tar"
        tar.addfile(link)
        entry = {"Config": f"{layered[7:]}.json", "RepoTags": ["web:1"],
                 "Layers": ["linked/layer.tar", *layer_names[1:]]}
        add("manifest.json", json.dumps([entry]).encode())
    assert other_store.load(legacy) == ["web:1"]
    _check_loaded(other_store, store, layered)


def test_load_refuses_a_damaged_layer_and_records_nothing(store: ImageStore,
                                                          other_store: ImageStore, layered: str,
                                                          tmp_path: Path) -> None:
    out = io.BytesIO()
    store.save(["web:1"], out)
    members = _members(out.getvalue())
    top = "blobs/sha256/" + store.resolve(layered).diff_ids[-1].removeprefix("sha256:")
    members[top] = members[top][:-1024] + b"\x01" * 1024
    with pytest.raises(CorruptedBlob, match="damaged or truncated"):
        other_store.load(_archive(members, tmp_path / "bad.tar"))
    assert other_store.images() == []


def test_load_refuses_a_config_that_does_not_match_its_name(store: ImageStore,
                                                            other_store: ImageStore,
                                                            layered: str, tmp_path: Path) -> None:
    out = io.BytesIO()
    store.save(["web:1"], out)
    members = _members(out.getvalue())
    name = "blobs/sha256/" + layered.removeprefix("sha256:")
    members[name] = members[name].replace(b"httpd", b"evil!")
    with pytest.raises(CorruptedBlob, match="does not match its digest"):
        other_store.load(_archive(members, tmp_path / "bad.tar"))


def test_save_refuses_a_damaged_blob_and_writes_no_file(store: ImageStore, layered: str,
                                                        tmp_path: Path) -> None:
    blob = store.blobs.path(store.resolve(layered).diff_ids[-1])
    blob.write_bytes(blob.read_bytes()[:-512])
    with pytest.raises(CorruptedBlob):
        store.save(["web:1"], tmp_path / "out.tar")
    assert list(tmp_path.glob("*tar*")) == [] and list(tmp_path.glob(".*")) == []


def test_load_of_something_else_names_the_file(other_store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="not an image archive"):
        other_store.load(_archive({"hello.txt": b"hi"}, tmp_path / "x.tar"))
    with pytest.raises(InvalidSpec, match="is not a file"):
        other_store.load(tmp_path / "missing.tar")


def test_load_picks_this_platform_from_a_multi_platform_index(store: ImageStore,
                                                              other_store: ImageStore,
                                                              layered: str,
                                                              tmp_path: Path) -> None:
    out = io.BytesIO()
    store.save(["web:1"], out)
    members = _members(out.getvalue())
    del members["manifest.json"], members["repositories"]
    index = json.loads(members["index.json"])
    ours = dict(index["manifests"][0])
    annotations = ours.pop("annotations")
    foreign = {**ours, "digest": "sha256:" + "0" * 64,
               "platform": {"os": "linux", "architecture": "s390x-none"}}
    native = {**ours, "platform": {"os": "linux", "architecture": go_arch()}}
    nested = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_INDEX,
                         "manifests": [foreign, native]}).encode()
    nested_digest = "sha256:" + hashlib.sha256(nested).hexdigest()
    members["blobs/sha256/" + nested_digest[7:]] = nested
    members["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": MEDIA_INDEX, "digest": nested_digest, "size": len(nested),
         "annotations": annotations}]}).encode()
    loaded = other_store.load(_archive(members, tmp_path / "multi.tar"))
    assert loaded == ["web:1"]  # the name sat on the index entry, as containerd writes it
    assert other_store.resolve(layered).config == store.resolve(layered).config
