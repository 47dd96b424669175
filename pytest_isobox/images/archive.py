"""`docker save` / `docker load` archives.

We write what Docker 25+ writes, which Docker 20.10 also loads: an OCI layout (`oci-layout`,
`index.json`, `blobs/sha256/…`) plus the legacy `manifest.json` and `repositories`, whose
layer paths point into `blobs/`. We read both that and Docker 20.10's legacy layout
(`manifest.json`, `<id>.json`, `<layer>/layer.tar`, layers possibly linked), or a bare OCI
layout; layers may be gzip, bzip2 or xz compressed. Every config and layer read from an
archive is checked against the digest its manifest gives before it is used; an archive is
written to a temp name and renamed, so a failed save leaves no file behind.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import tarfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.images import config as oci
from pytest_isobox.images.atomic import remove_path, temp_path
from pytest_isobox.images.blobs import CorruptedBlob, HashingReader, check_digest, sha256_digest
from pytest_isobox.images.compression import decompressed
from pytest_isobox.images.reference import normalize_tag, parse_reference

if TYPE_CHECKING:
    from pytest_isobox.images.store import ImageStore, StoredImage

_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")
_NAMED_BLOB = re.compile(r"(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?")


# ------------------------------------------------------------------------------ save

def save_archive(store: ImageStore, refs: list[str], path: str | Path | IO[bytes]) -> None:
    """Write `refs` (tags or ids) as one archive; tags named in `refs` become RepoTags."""
    if not refs:
        raise InvalidSpec("save: name at least one image")
    chosen: dict[str, list[str]] = {}
    for ref in refs:
        image_id, tag = store.find(ref)
        chosen.setdefault(image_id, [])
        if tag and tag not in chosen[image_id]:
            chosen[image_id].append(tag)
    images = [(store.resolve(image_id), tags) for image_id, tags in chosen.items()]
    if isinstance(path, str | Path):
        target = Path(path)
        if not target.parent.is_dir():
            raise InvalidSpec(f"save: directory {str(target.parent)!r} does not exist")
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.partial"
        try:
            with open(tmp, "wb") as out:
                _write_archive(store, images, out)
            os.replace(tmp, target)
        finally:
            remove_path(tmp)
    else:
        _write_archive(store, images, path)


def _write_archive(store: ImageStore, images: list[tuple[StoredImage, list[str]]],
                   out: IO[bytes]) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in ("blobs", "blobs/sha256"):
            tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
        written: set[str] = set()
        index, manifest_json, repositories = [], [], {}
        for image, tags in images:
            for digest in (*image.diff_ids, image.id, image.manifest_digest):
                if digest not in written:
                    _add_blob(store, tar, digest)
                    written.add(digest)
            manifest_size = store.blobs.size(image.manifest_digest)
            descriptor = {"mediaType": oci.MEDIA_MANIFEST, "digest": image.manifest_digest,
                          "size": manifest_size}
            for tag in tags:
                ref = parse_reference(tag)
                index.append({**descriptor, "annotations": {
                    "io.containerd.image.name": f"{ref.full_name}:{ref.tag}",
                    "org.opencontainers.image.ref.name": ref.tag}})
                if image.diff_ids:
                    top = image.diff_ids[-1].removeprefix("sha256:")
                    repositories.setdefault(ref.familiar_name, {})[ref.tag] = top
            if not tags:
                index.append(descriptor)
            manifest_json.append({
                "Config": _blob_name(image.id),
                "RepoTags": tags or None,
                "Layers": [_blob_name(d) for d in image.diff_ids],
            })
        _add_json(tar, "index.json", {"schemaVersion": 2, "mediaType": oci.MEDIA_INDEX,
                                      "manifests": index})
        _add_json(tar, "manifest.json", manifest_json)
        _add_json(tar, "oci-layout", {"imageLayoutVersion": "1.0.0"})
        if repositories:
            _add_json(tar, "repositories", repositories)


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, mode, size
    return info


def _add_json(tar: tarfile.TarFile, name: str, doc: object) -> None:
    data = json.dumps(doc, separators=(",", ":")).encode()
    tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))


def _add_blob(store: ImageStore, tar: tarfile.TarFile, digest: str) -> None:
    """Stream a stored blob into the archive, checking its digest on the way."""
    source, reader = store.blobs.open_verified(digest)
    with source:
        size = os.fstat(source.fileno()).st_size
        tar.addfile(_info(_blob_name(digest), tarfile.REGTYPE, 0o644, size), reader)
        reader.finish()


# ------------------------------------------------------------------------------ load

class _Archive:
    """Random access to an archive's members by normalised name, links followed."""

    def __init__(self, tar: tarfile.TarFile, label: str) -> None:
        self.tar = tar
        self.label = label
        self.members = {_normalise(m.name): m for m in tar.getmembers()}

    def has(self, name: str) -> bool:
        return _normalise(name) in self.members

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(_normalise(name))
        if member is None:
            raise InvalidSpec(f"{self.label}: {name!r} is missing from the archive")
        stream = self.tar.extractfile(member)
        if stream is None:
            raise InvalidSpec(f"{self.label}: {name!r} is not a file")
        return stream

    def read(self, name: str) -> bytes:
        with self.open(name) as stream:
            return stream.read()

    def read_json(self, name: str) -> object:
        try:
            return json.loads(self.read(name))
        except ValueError as exc:
            raise InvalidSpec(f"{self.label}: {name}: invalid JSON ({exc})") from None


def _normalise(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def load_archive(store: ImageStore, path: str | Path | IO[bytes]) -> list[str]:
    """Load every image of an archive; returns its tags (or ids of untagged images)."""
    if isinstance(path, str | Path):
        if not Path(path).is_file():
            raise InvalidSpec(f"load: {str(path)!r} is not a file")
        with _open_tar(path, str(path)) as tar:
            return _load_damaged_as_error(store, tar, str(path))
    store.blobs.tmp_dir.mkdir(parents=True, exist_ok=True)
    spool = temp_path(store.blobs.tmp_dir, "load")
    try:
        with open(spool, "wb") as out:
            shutil.copyfileobj(path, out, 1 << 20)
        with _open_tar(spool, "the archive on standard input") as tar:
            return _load_damaged_as_error(store, tar, "archive")
    finally:
        remove_path(spool)


def _open_tar(path: str | Path, label: str) -> tarfile.TarFile:
    """The archive as a tar (maybe compressed); one line when it is none."""
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, EOFError) as exc:
        kind = "empty" if Path(path).stat().st_size == 0 else "not a tar archive"
        raise InvalidSpec(f"load: {label} is {kind} ({type(exc).__name__})") from None


def _load_damaged_as_error(store: ImageStore, tar: tarfile.TarFile, label: str) -> list[str]:
    """_load, a truncated or damaged archive being one line naming it (not tarfile's error)."""
    import gzip
    import lzma
    import zlib

    try:
        return _load(store, _Archive(tar, label))
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as exc:
        raise InvalidSpec(f"load: {label} is truncated or damaged ({exc})") from None


def _load(store: ImageStore, archive: _Archive) -> list[str]:
    if archive.has("manifest.json"):
        entries = archive.read_json("manifest.json")
        if not isinstance(entries, list):
            raise InvalidSpec(f"{archive.label}: manifest.json is not a list")
        return [ref for entry in entries for ref in _load_legacy_entry(store, archive, entry)]
    if archive.has("index.json"):
        index = archive.read_json("index.json")
        loaded: list[str] = []
        for descriptor in _descriptors(index, archive):
            loaded.extend(_load_oci_manifest(store, archive, descriptor))
        return loaded
    raise InvalidSpec(f"{archive.label}: not an image archive (no manifest.json or index.json)")


def _load_legacy_entry(store: ImageStore, archive: _Archive, entry: object) -> list[str]:
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
        raise InvalidSpec(f"{archive.label}: manifest.json entry without a Config: {entry!r}")
    config_name = entry["Config"]
    config_bytes = archive.read(config_name)
    named = _NAMED_BLOB.fullmatch(_normalise(config_name))
    if named and sha256_digest(config_bytes) != f"sha256:{named.group(1)}":
        raise CorruptedBlob(f"{archive.label}: {config_name} does not match its digest")
    diff_ids = _diff_ids(config_bytes, f"{archive.label}: {config_name}")
    layer_names = entry.get("Layers") or []
    if len(layer_names) != len(diff_ids):
        raise InvalidSpec(f"{archive.label}: {config_name} lists {len(diff_ids)} layers, "
                          f"manifest.json {len(layer_names)}")
    for diff_id, name in zip(diff_ids, layer_names):
        if not _have_blob(store, diff_id):
            with archive.open(name) as stream:
                _store_layer(store, stream, diff_id, f"{archive.label}: layer {name}")
    image_id = store.add_image(config_bytes)
    return _tag_all(store, image_id, entry.get("RepoTags") or [])


def _descriptors(index: object, archive: _Archive) -> list[dict]:
    """Image manifest descriptors of an OCI index, nested indexes resolved to this platform
    (the names on an index entry pass to the manifest chosen from it, as containerd writes)."""
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidSpec(f"{archive.label}: index.json has no manifests")
    found = []
    for descriptor in index["manifests"]:
        if descriptor.get("mediaType") in _INDEX_TYPES:
            nested = json.loads(_read_blob(archive, descriptor))
            platform = [d for d in nested.get("manifests", []) if _this_platform(d)]
            names = descriptor.get("annotations") or {}
            found.extend({**d, "annotations": d.get("annotations") or names}
                         for d in _descriptors({"manifests": platform[:1]}, archive))
        else:
            found.append(descriptor)
    return found


def _this_platform(descriptor: dict) -> bool:
    platform = descriptor.get("platform") or {}
    return (platform.get("os", "linux") == "linux"
            and platform.get("architecture", oci.go_arch()) == oci.go_arch())


def _load_oci_manifest(store: ImageStore, archive: _Archive, descriptor: dict) -> list[str]:
    manifest = json.loads(_read_blob(archive, descriptor))
    config_bytes = _read_blob(archive, manifest["config"])
    diff_ids = _diff_ids(config_bytes, f"{archive.label}: config {manifest['config']['digest']}")
    layers = manifest.get("layers", [])
    if len(layers) != len(diff_ids):
        raise InvalidSpec(f"{archive.label}: manifest {descriptor['digest']} lists {len(layers)} "
                          f"layers, its config {len(diff_ids)}")
    for diff_id, layer in zip(diff_ids, layers):
        if _have_blob(store, diff_id):
            continue
        digest = check_digest(layer.get("digest"))
        what = f"{archive.label}: layer {digest}"
        with archive.open(_blob_name(digest)) as raw:
            reader = HashingReader(raw, digest, what)
            _store_layer(store, reader, diff_id, what)
            reader.finish()
    image_id = store.add_image(config_bytes)
    annotations = descriptor.get("annotations") or {}
    name = annotations.get("io.containerd.image.name") or ""
    ref_name = annotations.get("org.opencontainers.image.ref.name") or ""
    if not name and ("/" in ref_name or ":" in ref_name):
        name = ref_name
    return _tag_all(store, image_id, [name] if name else [])


def _read_blob(archive: _Archive, descriptor: dict) -> bytes:
    digest = check_digest(descriptor.get("digest"))
    data = archive.read(_blob_name(digest))
    if sha256_digest(data) != digest:
        raise CorruptedBlob(f"{archive.label}: blob {digest} does not match its digest")
    return data


def _diff_ids(config_bytes: bytes, what: str) -> list[str]:
    try:
        diff_ids = json.loads(config_bytes)["rootfs"]["diff_ids"]
        return [check_digest(d) for d in diff_ids]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidSpec(f"{what}: invalid image config ({exc})") from None


def _have_blob(store: ImageStore, digest: str) -> bool:
    """Whether a sound copy is stored already (a damaged one is replaced by the archive's)."""
    try:
        store.blobs.verify(digest)
    except CorruptedBlob:
        return False
    return True


def _store_layer(store: ImageStore, stream: IO[bytes], diff_id: str, what: str) -> None:
    with store.blobs.writer() as writer:
        shutil.copyfileobj(decompressed(stream, what), writer.stream, 1 << 20)
        writer.commit(expected=diff_id, what=what)


def _tag_all(store: ImageStore, image_id: str, tags: list[str]) -> list[str]:
    for tag in tags:
        store.tag(image_id, tag)
    return [normalize_tag(t) for t in tags] or [image_id]
