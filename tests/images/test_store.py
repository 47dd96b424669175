"""The image store: import, resolve, commit, tags, rmi, prune, df, and the on-disk layout."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from pytest_isobox.engine import ConflictError, ImageNotFound
from pytest_isobox.images.config import DEFAULT_PATH_ENV
from pytest_isobox.images.store import ImageStore
from pytest_isobox.images.tarsafe import UnsafeArchiveEntry
from tests.conftest import needs_root

from .tarhelp import make_tar

pytestmark = needs_root  # unpacked layers hold overlay whiteouts (mknod, trusted.* xattrs)


def test_import_of_a_directory(store: ImageStore, busybox_image: str, isobox_home: Path) -> None:
    image = store.resolve("busybox")
    assert image.id == busybox_image and image.tags == ["busybox:latest"]
    assert image.config["config"] == {"Env": [DEFAULT_PATH_ENV]}
    assert image.config["rootfs"]["type"] == "layers"
    assert image.diff_ids == image.chain_ids and len(image.diff_ids) == 1
    (lower,) = store.layer_dirs(busybox_image)
    assert lower == isobox_home / "layers" / image.chain_ids[0].removeprefix("sha256:") / "diff"
    assert (lower / "bin" / "busybox").is_file()
    assert (lower / "bin" / "sh").readlink() == Path("busybox")
    layout = json.loads((isobox_home / "oci" / "oci-layout").read_text())
    assert layout == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((isobox_home / "oci" / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == image.manifest_digest
    assert entry["annotations"]["io.containerd.image.name"] == "docker.io/library/busybox:latest"
    assert (isobox_home / "oci" / "blobs" / "sha256" / busybox_image[7:]).is_file()


def test_resolve_by_tag_id_full_hex_and_prefix(store: ImageStore, busybox_image: str) -> None:
    hex_id = busybox_image.removeprefix("sha256:")
    for ref in ("busybox", "busybox:latest", "docker.io/library/busybox", busybox_image, hex_id,
                hex_id[:12], f"sha256:{hex_id[:8]}"):
        assert store.resolve(ref).id == busybox_image, ref
    for ref in ("busybox:other", "nope", "sha256:" + "0" * 64, "0" * 12):
        with pytest.raises(ImageNotFound, match=f"No such image: {ref}"):
            store.resolve(ref)


def test_import_of_compressed_and_plain_tars(store: ImageStore) -> None:
    plain = make_tar(("bin", "dir"), ("bin/tool", "file", b"#!/bin/sh\n")).read()
    first = store.import_rootfs(_write(store.home / "in.tar", plain), "plain")
    second = store.import_rootfs(_write(store.home / "in.tgz", gzip.compress(plain)), "zipped")
    third = store.import_rootfs(io.BytesIO(gzip.compress(plain)), None)
    assert store.resolve(first).diff_ids == store.resolve(second).diff_ids == \
        store.resolve(third).diff_ids
    assert store.resolve(third).tags == []
    assert store.resolve(third).config["history"][0]["comment"] == "Imported from -"
    (lower,) = store.layer_dirs("zipped")
    assert (lower / "bin" / "tool").read_bytes() == b"#!/bin/sh\n"


def test_a_malicious_import_records_nothing(store: ImageStore) -> None:
    evil = make_tar(("link", "symlink", "../../.."), ("link/etc/pwned", "file", b"x")).read()
    with pytest.raises(UnsafeArchiveEntry, match="link/etc/pwned"):
        store.import_rootfs(_write(store.home / "evil.tar", evil), "evil")
    assert store.images() == []
    assert store.layers.chain_ids() == []


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _upper(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_commit_adds_a_layer_and_replaces_the_config(store: ImageStore, busybox_image: str,
                                                     tmp_path: Path) -> None:
    upper = _upper(tmp_path / "upper", {"data/hello.txt": "hello world\n"})
    os.mknod(upper / "etc", 0o020000, os.makedev(0, 0))  # `rm -rf /etc`
    config = {"Cmd": ["cat", "/data/hello.txt"], "ExposedPorts": {"80/tcp": {}}, "Env": None}
    image_id = store.commit(busybox_image, upper, config, "/bin/sh -c mkdir /data", author="me")
    image = store.resolve(image_id)
    base = store.resolve(busybox_image)
    assert image.diff_ids[:1] == base.diff_ids and len(image.diff_ids) == 2
    assert image.config["config"] == {"Cmd": ["cat", "/data/hello.txt"],
                                      "ExposedPorts": {"80/tcp": {}}}
    assert image.config["author"] == "me"
    assert [h.get("created_by") for h in image.config["history"]] == [
        "", "/bin/sh -c mkdir /data"]
    assert image.tags == []
    lower, top = store.layer_dirs(image_id)
    assert (top / "data" / "hello.txt").read_text() == "hello world\n"
    assert os.lstat(top / "etc").st_rdev == 0 and not (top / "bin").exists()
    assert lower == store.layer_dirs(busybox_image)[0]


def test_a_committed_layer_never_changes_afterwards(store: ImageStore, busybox_image: str,
                                                    tmp_path: Path) -> None:
    upper = _upper(tmp_path / "upper", {"f": "one\n"})
    image_id = store.commit(busybox_image, upper, {}, "step")
    (upper / "f").write_text("two\n")
    (upper / "g").write_text("new\n")
    top = store.layer_dirs(image_id)[-1]
    assert (top / "f").read_text() == "one\n" and not (top / "g").exists()
    assert os.stat(top / "f").st_ino != os.stat(upper / "f").st_ino


def test_commit_of_nothing_adds_an_empty_layer_entry(store: ImageStore, busybox_image: str,
                                                     tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for upper in (None, tmp_path / "empty"):
        image = store.resolve(store.commit(busybox_image, upper, {"User": "nobody"}, "USER"))
        assert image.diff_ids == store.resolve(busybox_image).diff_ids
        assert image.config["history"][-1]["empty_layer"] is True


def test_a_handed_over_upper_dir_is_moved_into_the_layer(store: ImageStore, busybox_image: str,
                                                         tmp_path: Path) -> None:
    copied = store.commit(busybox_image, _upper(tmp_path / "u1", {"app/a": "1"}), {}, "x")
    upper = _upper(tmp_path / "u2", {"app/a": "1"})
    os.setxattr(upper / "app", "trusted.overlay.impure", b"y")
    moved = store.commit(busybox_image, upper, {}, "x", take_upper=True)
    assert store.resolve(moved).diff_ids == store.resolve(copied).diff_ids  # same layer
    # that layer was there already: the upper dir stays with its owner
    assert upper.is_dir()
    fresh = _upper(tmp_path / "u3", {"app/b": "2" * 100})
    os.setxattr(fresh / "app", "trusted.overlay.impure", b"y")
    image = store.commit(busybox_image, fresh, {}, "y", take_upper=True)
    assert not fresh.exists()
    lower = store.layer_dirs(image)[-1]
    assert (lower / "app" / "b").read_text() == "2" * 100
    assert os.listxattr(lower / "app") == []
    assert oct(lower.stat().st_mode & 0o777) == oct(0o755)
    assert store.layers.size(store.resolve(image).chain_ids[-1]) == 100
    store.verify(image)  # the moved dir matches its blob
    assert os.listdir(store.home / "tmp") == []


def test_identical_content_from_scratch_shares_one_layer(store: ImageStore,
                                                          tmp_path: Path) -> None:
    uppers = [_upper(tmp_path / name, {"x": "same\n"}) for name in ("a", "b")]
    for upper in uppers:
        os.utime(upper / "x", (1, 1))
    first, second = (store.commit(None, upper, {}, "COPY x") for upper in uppers)
    assert store.resolve(first).chain_ids == store.resolve(second).chain_ids
    assert len(store.layers.chain_ids()) == 1
    assert len(store.resolve(first).diff_ids) == 1


def test_tags_untag_and_rmi(store: ImageStore, busybox_image: str, isobox_home: Path) -> None:
    store.tag("busybox", "mine:v1")
    store.tag(busybox_image[:10], "docker.io/library/other")
    assert store.resolve("other:latest").tags == ["busybox:latest", "mine:v1", "other:latest"]
    with pytest.raises(ConflictError, match="referenced in multiple repositories"):
        store.remove(busybox_image)
    assert store.remove("mine:v1") == ["Untagged: mine:v1"]
    store.untag("other")
    with pytest.raises(ImageNotFound):
        store.untag("other")
    with pytest.raises(ConflictError, match="must force"):
        store.remove("busybox", in_use={busybox_image})
    assert store.remove("busybox") == ["Untagged: busybox:latest", f"Deleted: {busybox_image}"]
    assert store.images() == []
    assert list(store.blobs.digests()) == [] and store.layers.chain_ids() == []
    assert json.loads((isobox_home / "oci" / "index.json").read_text())["manifests"] == []


def test_forced_rmi_of_an_image_in_use_only_untags(store: ImageStore, busybox_image: str) -> None:
    store.tag(busybox_image, "second")
    messages = store.remove(busybox_image, force=True, in_use={busybox_image})
    assert messages == ["Untagged: busybox:latest", "Untagged: second:latest"]
    assert store.layer_dirs(busybox_image)[0].is_dir()
    assert store.prune(in_use={busybox_image}) == 0
    assert store.prune(in_use=set()) > 0
    with pytest.raises(ImageNotFound):
        store.resolve(busybox_image)


def test_prune_keeps_tagged_and_used_images(store: ImageStore, busybox_image: str,
                                            tmp_path: Path) -> None:
    used = store.commit(busybox_image, _upper(tmp_path / "u1", {"a": "1"}), {}, "a")
    unused = store.commit(busybox_image, _upper(tmp_path / "u2", {"b": "2"}), {}, "b")
    before = store.disk_usage()
    assert before["images"]["count"] == 3 and before["layers"]["count"] == 3
    assert before["reclaimable"] > 0
    reclaimed = store.prune(in_use={used})
    assert reclaimed > 0
    assert {i.id for i in store.images()} == {busybox_image, used}
    with pytest.raises(ImageNotFound):
        store.resolve(unused)
    after = store.disk_usage()
    assert after["layers"]["count"] == 2
    assert after["images"]["size"] < before["images"]["size"]
    assert store.prune(in_use={used}) == 0


def test_disk_usage_counts_a_shared_layer_once(store: ImageStore, busybox_image: str,
                                              tmp_path: Path) -> None:
    base = store.resolve(busybox_image)
    one = store.commit(busybox_image, _upper(tmp_path / "u1", {"a": "1" * 1000}), {}, "a")
    two = store.commit(busybox_image, _upper(tmp_path / "u2", {"b": "2" * 3000}), {}, "b")
    meta = store.commit(two, None, {"Cmd": ["sh"]}, "cmd")  # same layers as `two`
    usage = store.disk_usage()
    rows = {row["id"]: row for row in usage["per_image"]}
    assert set(rows) == {busybox_image, one, two, meta}
    busybox_layer = base.layer_sizes[0]
    one_layer = store.resolve(one).layer_sizes[1]
    two_layer = store.resolve(two).layer_sizes[1]
    # busybox's layer is in all four images; `two`'s own layer is in `two` and `meta`
    assert rows[one]["shared_size"] == busybox_layer
    assert rows[one]["unique_size"] == rows[one]["size"] - busybox_layer
    assert rows[one]["size"] == busybox_layer + one_layer + store.blobs.size(one)
    assert rows[two]["shared_size"] == rows[meta]["shared_size"] == busybox_layer + two_layer
    assert rows[busybox_image]["shared_size"] == busybox_layer
    images = usage["images"]
    assert images["layers_size"] == busybox_layer + one_layer + two_layer  # each layer once
    assert images["shared_size"] == busybox_layer + two_layer
    assert images["unique_size"] == one_layer
    assert usage["per_image"][0]["id"] == meta  # newest first


def test_prune_keeps_the_parents_of_kept_images(store: ImageStore, busybox_image: str,
                                                tmp_path: Path) -> None:
    step = store.commit(busybox_image, _upper(tmp_path / "u1", {"a": "1"}), {}, "a")
    meta = store.commit(step, None, {"Cmd": ["sh"]}, "cmd")
    used_step = store.commit(busybox_image, _upper(tmp_path / "u2", {"b": "2"}), {}, "b")
    used = store.commit(used_step, None, {}, "noop")
    dropped = store.commit(busybox_image, _upper(tmp_path / "u3", {"c": "3"}), {}, "c")
    store.tag(meta, "final")
    store.prune(in_use={used})
    assert {i.id for i in store.images()} == {busybox_image, step, meta, used_step, used}
    with pytest.raises(ImageNotFound):
        store.resolve(dropped)
    store.untag("final")
    store.prune(in_use=set())
    assert {i.id for i in store.images()} == {busybox_image}


def test_images_lists_newest_first(store: ImageStore, busybox_image: str, tmp_path: Path) -> None:
    newer = store.commit(busybox_image, None, {}, "noop")
    store.tag(newer, "newer")
    listed = store.images()
    assert [i.id for i in listed] == [newer, busybox_image]
    assert listed[0].tags == ["newer:latest"] and listed[0].size == listed[1].size > 0


def test_save_to_a_missing_directory_names_it(store: ImageStore, busybox_image: str,
                                              tmp_path: Path) -> None:
    from pytest_isobox.engine import InvalidSpec

    with pytest.raises(InvalidSpec, match="does not exist"):
        store.save(["busybox"], tmp_path / "no" / "x.tar")


def test_saved_archive_lists_layers_uncompressed(store: ImageStore, busybox_image: str) -> None:
    out = io.BytesIO()
    store.save(["busybox"], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        (layer,) = manifest[0]["Layers"]
        assert manifest[0]["RepoTags"] == ["busybox:latest"]
        assert "sha256:" + layer.rsplit("/", 1)[1] == store.resolve("busybox").diff_ids[0]
        assert tar.extractfile(layer).read(512)[:3] == b"bin"
