"""`isobox pull`: an image from a registry into the ImageStore.

Layers arrive compressed (gzip, zstd, or plain tar); the store keeps them uncompressed under
their diff id (see images.store), so each is decompressed while it streams in: the
compressed bytes are hashed against the manifest's digest, the tar written to a blob writer
checked against the config's diff id, and only when both match is the blob published (by
rename). A blob already stored (either digest checked) is never downloaded again. Each blob
is produced under its own filelock: processes pulling one image at once download it once,
the others wait and find it stored. A process killed mid-pull leaves only its temp files
(swept later) and no tag: the image is recorded and tagged last.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.images.blobs import CorruptedBlob, HashingReader, check_digest
from pytest_isobox.images.compression import decompressed
from pytest_isobox.images.reference import Reference, parse_reference
from pytest_isobox.images.registry import platforms
from pytest_isobox.images.registry.client import INDEX_TYPES, RegistryClient
from pytest_isobox.images.registry.errors import RegistryError
from pytest_isobox.images.registry.settings import RegistrySettings

if TYPE_CHECKING:
    from pytest_isobox.images.store import ImageStore

# progress(event, digest, done, total): events "exists", "waiting", "download", "done"
Progress = Callable[[str, str, int, int], None]
_PARALLEL = 3
_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws")


def _quiet(event: str, digest: str, done: int, total: int) -> None:
    pass


def pull_image(store: ImageStore, text: str, *, progress: Progress | None = None,
               settings: RegistrySettings | None = None, platform: str | None = None) -> str:
    """Pull `text` (`name[:tag]` or `name@digest`); returns the image id, tagged `name:tag`.
    `platform` (`os/arch[/variant]`) picks from an index instead of this machine's."""
    ref = parse_reference(text)
    if platform:
        platforms.parse_platform(platform)  # a bad value fails before any request
    report = progress or _quiet
    client = RegistryClient(ref, settings)
    manifest, manifest_digest = _manifest(client, ref, platform)
    config_desc = manifest.get("config") or {}
    config_digest = check_digest(config_desc.get("digest"))
    config_bytes = _config(store, client, config_digest)
    try:
        diff_ids = [check_digest(d) for d in json.loads(config_bytes)["rootfs"]["diff_ids"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidSpec(f"{ref}: invalid image config {config_digest} ({exc})") from None
    layers = manifest.get("layers") or []
    if len(layers) != len(diff_ids):
        raise InvalidSpec(f"{ref}: manifest lists {len(layers)} layers, its config "
                          f"{len(diff_ids)}")
    with store.writing():
        jobs = [(layer, diff_id) for layer, diff_id in zip(layers, diff_ids)]
        if len(jobs) <= 1:
            for layer, diff_id in jobs:
                _layer(store, client, layer, diff_id, report)
        else:
            with ThreadPoolExecutor(min(_PARALLEL, len(jobs))) as pool:
                for future in [pool.submit(_layer, store, client, layer, diff_id, report)
                               for layer, diff_id in jobs]:
                    future.result()
        image_id = store.add_image(config_bytes,
                                   repo_digest=f"{ref.familiar_name}@{manifest_digest}")
    if ref.tag:
        store.tag(image_id, f"{ref.familiar_name}:{ref.tag}")
    return image_id


def _manifest(client: RegistryClient, ref: Reference,
              platform: str | None = None) -> tuple[dict, str]:
    """The image manifest for this platform (an index resolved) and its digest."""
    data, media, digest = client.get_manifest(ref.digest or ref.tag or "latest")
    doc = _json(data, f"{ref}: manifest")
    media = doc.get("mediaType") or media
    if media in INDEX_TYPES or (not media and "manifests" in doc):
        chosen = platforms.choose(doc, str(ref), platform)
        data, media, digest = client.get_manifest(check_digest(chosen.get("digest")))
        doc = _json(data, f"{ref}: manifest {chosen.get('digest')}")
        media = doc.get("mediaType") or media
    if media in _SCHEMA1 or doc.get("schemaVersion") == 1:
        raise RegistryError(f"{ref}: Docker schema 1 manifests are not supported (push the "
                            "image again with a current docker)")
    if "config" not in doc or "layers" not in doc:
        raise RegistryError(f"{ref}: the registry sent a {media or 'document'} that is not an "
                            "image manifest")
    return doc, digest


def _json(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise RegistryError(f"{what}: invalid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what}: not a JSON object")
    return doc


def _sound(store: ImageStore, digest: str) -> bool:
    try:
        store.blobs.verify(digest)
    except CorruptedBlob:
        return False
    return True


def _config(store: ImageStore, client: RegistryClient, digest: str) -> bytes:
    """The config blob: stored already, else fetched under its key lock, so processes pulling
    one image at once fetch it once (the others wait and read it stored)."""
    try:
        return store.blobs.read_bytes(digest)
    except CorruptedBlob:
        pass
    with store.producing(f"pull:{digest}"):
        try:
            return store.blobs.read_bytes(digest)
        except CorruptedBlob:
            pass
        data = client.get_small_blob(digest)
        store.blobs.put_bytes(data)
    return data


def _layer(store: ImageStore, client: RegistryClient, layer: dict, diff_id: str,
           report: Progress) -> None:
    digest = check_digest(layer.get("digest"))
    size = layer.get("size") if isinstance(layer.get("size"), int) else None
    if _sound(store, diff_id):
        report("exists", digest, size or 0, size or 0)
        return
    report("waiting", digest, 0, size or 0)
    with store.producing(f"pull:{diff_id}"):
        if _sound(store, diff_id):  # another process pulled it meanwhile
            report("exists", digest, size or 0, size or 0)
            return
        done = 0

        def advanced(count: int) -> None:
            nonlocal done
            done += count
            report("download", digest, done, size or 0)

        what = f"{client.ref}: layer {digest}"
        stream = client.open_blob(digest, size, advanced)
        try:
            reader = HashingReader(stream, digest, what)  # type: ignore[arg-type]
            with store.blobs.writer() as writer:
                try:
                    shutil.copyfileobj(decompressed(reader, what), writer.stream, 1 << 20)
                except (RegistryError, InvalidSpec):
                    raise
                except Exception as exc:  # noqa: BLE001 - zlib, lzma, zstd: damaged data
                    reader.finish()  # a digest mismatch says more than the decompressor
                    raise CorruptedBlob(f"{what}: cannot decompress it ({exc})") from None
                reader.finish()  # the compressed bytes match the manifest, or nothing is kept
                if size is not None and reader.size != size:
                    raise CorruptedBlob(f"{what}: {reader.size} bytes, the manifest says {size}")
                writer.commit(expected=diff_id, what=f"{what} (uncompressed)")
        finally:
            stream.close()
        report("done", digest, done, size or 0)
