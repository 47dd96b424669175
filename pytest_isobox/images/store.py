"""The image store: OCI blobs, unpacked layers and the tag index under one ISOBOX_HOME.

Layout:
  oci/oci-layout, oci/blobs/sha256/<hex>   an OCI image layout: configs, manifests, layers
  oci/index.json                           its index: every tagged image (derived from tags)
  imagedb/<id hex>                         one record per image: its manifest digest
  tags.json                                tag -> image id
  layers/<chainid hex>/diff, layer.json    unpacked layers (overlay lowerdirs) and markers
  tmp/                                     work in progress, owner-stamped
  locks/                                   kernel locks (pytest_isobox.locks)

Layers are stored uncompressed (`application/vnd.oci.image.layer.v1.tar`): a layer's blob
digest is its diff id, nothing is decompressed to start a container, and `docker load`
accepts them as they are. An image id is `sha256:` + the digest of its config.

Safe for many processes at once: blobs, layers and image records appear by rename only,
`tags.json` (and the derived `oci/index.json`) is rewritten atomically under a key lock, and
`prune` excludes producers with a store-wide lock.
"""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from pytest_isobox.engine import ConflictError, ImageInfo, ImageNotFound, InvalidSpec
from pytest_isobox.engine.records import Record, record
from pytest_isobox.images import config as oci
from pytest_isobox.images.atomic import sweep_dead_temps
from pytest_isobox.images.blobs import BlobStore, CorruptedBlob
from pytest_isobox.images.index import ImageIndex
from pytest_isobox.images.layers import LayerStore
from pytest_isobox.images.reference import is_id_prefix, normalize_tag, parse_reference
from pytest_isobox.locks import StoreLock, key_lock


@record
class StoredImage(Record):
    """An image as stored: its config document and the layers it stacks, bottom first."""

    id: str
    config: dict
    manifest_digest: str
    diff_ids: list[str]
    chain_ids: list[str]
    tags: list[str]
    size: int
    layer_sizes: list[int]


class ImageStore:
    """Images, tags and layers in `home` (see the module docstring for layout and guarantees)."""

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home)
        self._tmp = self.home / "tmp"
        self._locks = self.home / "locks"
        self.blobs = BlobStore(self.home / "oci", self._tmp)
        self.blobs.ensure_layout()
        self._store_lock = StoreLock(self._locks)
        self.layers = LayerStore(self.home / "layers", self.blobs, self._store_lock,
                                 self._locks, self._tmp)
        self.index = ImageIndex(self.home, self.blobs.root, self._tmp, self._locks)
        sweep_dead_temps(self._tmp)

    # ------------------------------------------------------------------ lookups

    def _find(self, ref: str, tags: dict[str, str] | None = None) -> tuple[str, str | None]:
        """(image id, the tag it was found by or None) for `ref`, else ImageNotFound."""
        tags = self.index.tags() if tags is None else tags
        if ref.startswith("sha256:") and len(ref) == 71:
            if self.index.has(ref):
                return ref, None
            raise ImageNotFound(f"No such image: {ref}")
        try:
            parsed = parse_reference(ref)
        except InvalidSpec:
            parsed = None
        if parsed is not None and parsed.digest is None and str(parsed) in tags:
            tag = str(parsed)
            if self.index.has(tags[tag]):
                return tags[tag], tag
        if parsed is not None and parsed.digest is not None:
            for image_id in self.index.ids():
                record = self._record_or_empty(image_id)
                pulled = {d.rpartition("@")[2] for d in record.get("repo_digests", ())
                          if d.partition("@")[0] == parsed.familiar_name}
                if parsed.digest in (image_id, record.get("manifest")) or parsed.digest in pulled:
                    return image_id, None
        if is_id_prefix(ref):
            prefix = "sha256:" + ref.removeprefix("sha256:")
            found = [i for i in self.index.ids() if i.startswith(prefix)]
            if len(found) == 1:
                return found[0], None
            if len(found) > 1:
                raise ImageNotFound(f"No such image: {ref} (the prefix matches {len(found)} images)")
        raise ImageNotFound(f"No such image: {ref}")

    def find(self, ref: str) -> tuple[str, str | None]:
        """(image id, the normalised tag `ref` named, or None when it named an id)."""
        return self._find(ref)

    def resolve(self, ref: str) -> StoredImage:
        """The image named by a tag, `sha256:<hex>`, full hex or unique id prefix.

        ImageNotFound names `ref`; CorruptedBlob when its config or manifest is damaged.
        """
        image_id, _ = self._find(ref)
        return self._stored(image_id)

    def _stored(self, image_id: str, tags: dict[str, str] | None = None) -> StoredImage:
        record = self.index.record(image_id)
        if record is None:
            raise ImageNotFound(f"No such image: {image_id}")
        manifest = json.loads(self.blobs.read_bytes(record["manifest"]))
        config = json.loads(self.blobs.read_bytes(image_id))
        diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
        layer_sizes = [layer["size"] for layer in manifest.get("layers", [])]
        return StoredImage(
            id=image_id,
            config=config,
            manifest_digest=record["manifest"],
            diff_ids=diff_ids,
            chain_ids=oci.chain_ids(diff_ids),
            tags=self.index.tags_of(image_id, tags),
            size=sum(layer_sizes),
            layer_sizes=layer_sizes,
        )

    def layer_dirs(self, image_id: str) -> list[Path]:
        """The image's overlay lower dirs, bottom first; missing ones are unpacked (locked)."""
        image = self.resolve(image_id)
        return [self.layers.ensure(chain_id, diff_id)
                for chain_id, diff_id in zip(image.chain_ids, image.diff_ids)]

    def images(self) -> list[ImageInfo]:
        """Every image, newest first; one whose blobs are damaged is listed with an empty config."""
        all_tags = self.index.tags()
        found = []
        for image_id in self.index.ids():
            tags = self.index.tags_of(image_id, all_tags)
            try:
                image = self._stored(image_id, all_tags)
            except CorruptedBlob:
                found.append(ImageInfo(image_id, tags, {}, 0, None))
                continue
            found.append(ImageInfo(image.id, tags, image.config, image.size,
                                   image.config.get("created")))
        return sorted(found, key=lambda info: info.created or "", reverse=True)

    # ------------------------------------------------------------------ making images

    def add_image(self, config_bytes: bytes, parent: str | None = None,
                  repo_digest: str | None = None) -> str:
        """Record an image from its config bytes; its layer blobs must already be stored.

        `parent` is the id of the image it was made from (a build step's base): prune keeps
        the parents of every image it keeps, as Docker does, so build cache chains stay whole.
        `repo_digest` (`name@sha256:…`) is the manifest a registry served it as, so
        `name@digest` finds it. Returns the image id (the config's digest). The config bytes
        are stored unchanged.
        """
        try:
            doc = json.loads(config_bytes)
            diff_ids = list(doc["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidSpec(f"invalid image config: {exc}") from None
        with self._store_lock.shared():
            return self._record_image(config_bytes, diff_ids,
                                      [self.blobs.size(d) for d in diff_ids], parent,
                                      repo_digest)

    def _record_image(self, config_bytes: bytes, diff_ids: list[str], sizes: list[int],
                      parent: str | None, repo_digest: str | None = None) -> str:
        """Store config and manifest, then the record that makes the image exist (the caller
        holds the store lock shared and has stored the layer blobs, of these sizes)."""
        config_digest = self.blobs.put_bytes(config_bytes)
        manifest = oci.encode(oci.new_manifest(config_digest, len(config_bytes),
                                               list(zip(diff_ids, sizes))))
        manifest_digest = self.blobs.put_bytes(manifest)
        record: dict = {"manifest": manifest_digest, "manifest_size": len(manifest)}
        try:
            earlier = self.index.record(config_digest) or {}
        except CorruptedBlob:
            earlier = {}
        parent = parent or earlier.get("parent")
        if parent:
            record["parent"] = parent
        repo_digests = list(earlier.get("repo_digests", ()))
        if repo_digest and repo_digest not in repo_digests:
            repo_digests.append(repo_digest)
        if repo_digests:
            record["repo_digests"] = repo_digests
        self.index.add(config_digest, record)
        return config_digest

    def import_rootfs(self, source: str | Path | IO[bytes], ref: str | None) -> str:
        """`docker import`: one layer from a directory, a tar file or a tar stream (gzip,
        bzip2, xz too).

        The config holds only a default PATH; the layer is unpacked (and checked) before the
        image is recorded. Returns the image id and tags it `ref` when given.
        """
        import shutil

        from pytest_isobox.images.compression import decompressed
        from pytest_isobox.images.tartree import write_tree

        tag = normalize_tag(ref) if ref else None
        label = "-" if hasattr(source, "read") else str(source)
        if label != "-" and not Path(label).exists():
            raise InvalidSpec(f"cannot import {label!r}: no such file or directory")
        with self._store_lock.shared():
            with self.blobs.writer() as writer:
                if label == "-":
                    shutil.copyfileobj(decompressed(source, "stdin"), writer.stream, 1 << 20)
                elif Path(label).is_dir():
                    write_tree(Path(label), writer.stream)
                else:
                    with open(label, "rb") as raw:
                        shutil.copyfileobj(decompressed(raw, label), writer.stream, 1 << 20)
                diff_id = writer.commit()
            self.layers.ensure(diff_id, diff_id)
            history = oci.new_history("", comment=f"Imported from {label}")
            doc = oci.new_config(None, {"Env": [oci.DEFAULT_PATH_ENV]}, [diff_id], history)
            image_id = self.add_image(oci.encode(doc))
        if tag:
            self.tag(image_id, tag)
        return image_id

    def commit(self, base: str | None, upper_dir: Path | None, config: dict, created_by: str,
               *, comment: str = "", author: str | None = None,
               take_upper: bool = False) -> str:
        """A new image: `base`'s layers plus one made from `upper_dir` (an overlay upper dir).

        An empty or absent `upper_dir` adds no layer (history marks `empty_layer`). The
        config's "config" section becomes `config`; `author` (MAINTAINER) is kept from the
        base unless given. The new layer is copied out of `upper_dir` (never shared), so the
        image does not change when the container writes on. With `take_upper` the caller
        hands `upper_dir` over (its container has stopped, nothing mounts it, and it is
        deleted next): it is renamed into the layer store instead of being unpacked again
        from the blob, and may be gone afterwards. Returns the image id.
        """
        parent = self.resolve(base) if base else None
        diff_ids = list(parent.diff_ids) if parent else []
        sizes = list(parent.layer_sizes) if parent else []
        with self._store_lock.shared():
            layer = self._layer_from_upper(upper_dir, take_upper) if upper_dir is not None \
                else None
            if layer is not None:
                diff_id, size, content_bytes = layer
                diff_ids.append(diff_id)
                sizes.append(size)
                chain_id = oci.chain_ids(diff_ids)[-1]
                if not (take_upper and self.layers.adopt(chain_id, diff_id, Path(upper_dir),
                                                         content_bytes)):
                    self.layers.ensure(chain_id, diff_id)
            history = oci.new_history(created_by, comment, empty_layer=layer is None)
            doc = oci.new_config(parent.config if parent else None, config, diff_ids, history,
                                 author)
            return self._record_image(oci.encode(doc), diff_ids, sizes,
                                      parent.id if parent else None)

    def _layer_from_upper(self, upper_dir: Path, handover: bool) -> tuple[str, int, int] | None:
        """(diff id, blob size, content bytes) of the layer blob written from `upper_dir`
        (made a lower dir too when handed over); None if it is empty."""
        from pytest_isobox.images.tartree import write_handover_tree, write_tree

        with os.scandir(upper_dir) as entries:
            if next(entries, None) is None:  # nothing written: no layer, no blob file
                return None
        with self.blobs.writer() as writer:
            if handover:
                count, content_bytes = write_handover_tree(Path(upper_dir), writer.stream)
            else:
                count, content_bytes = write_tree(Path(upper_dir), writer.stream,
                                                  overlay_diff=True), 0
            if count == 0:
                return None
            size = writer.stream.size
            return writer.commit(), size, content_bytes

    # ------------------------------------------------------------------ tags

    def tag(self, ref_or_id: str, new_ref: str) -> None:
        """Point `new_ref` (normalised, `name` means `name:latest`) at an image."""
        tag = normalize_tag(new_ref)
        with self.index.editing() as tags:
            tags[tag] = self._find(ref_or_id, tags)[0]

    def untag(self, ref: str) -> None:
        """Remove one tag; the image stays (see `remove` for `docker rmi`)."""
        tag = normalize_tag(ref)
        with self.index.editing() as tags:
            if tag not in tags:
                raise ImageNotFound(f"No such image: {ref}")
            del tags[tag]

    def remove(self, ref: str, *, force: bool = False,
               in_use: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """`docker rmi`: returns Docker's `Untagged: …` / `Deleted: …` lines.

        By tag: removes that tag, and the image with its last tag. By id: refuses (unless
        `force`) an image with several tags. An image used by a container (`in_use` ids)
        raises ConflictError unless `force`; forced, it loses its tags but stays until unused.
        Space is reclaimed at once (blobs and layers no image references).
        """
        messages: list[str] = []
        with self.index.editing() as tags:
            image_id, by_tag = self._find(ref, tags)
            named = self.index.tags_of(image_id, tags)
            short = image_id.removeprefix("sha256:")[:12]
            used = image_id in in_use
            if by_tag is not None:
                if len(named) == 1 and used and not force:
                    raise ConflictError(
                        f'conflict: unable to remove repository reference "{ref}" (must force) '
                        f"- a container is using its referenced image {short}")
                untag = [by_tag]
                delete = len(named) == 1 and not used
            else:
                if len(named) > 1 and not force:
                    raise ConflictError(f"conflict: unable to delete {short} (must be forced) - "
                                        "image is referenced in multiple repositories")
                if used and not force:
                    raise ConflictError(f"conflict: unable to delete {short} (must be forced) - "
                                        "image is being used by a container")
                untag, delete = named, not used
            for tag in untag:
                del tags[tag]
                messages.append(f"Untagged: {tag}")
            if delete:
                self.index.drop(image_id)
                messages.append(f"Deleted: {image_id}")
        if any(m.startswith("Deleted: ") for m in messages):
            with self._store_lock.exclusive():
                self._collect_garbage()
        return messages

    # ------------------------------------------------------------------ space

    def prune(self, in_use: set[str] | frozenset[str] = frozenset()) -> int:
        """Remove images with no tag that no container uses and that are no parent (build
        step) of such an image, then every blob and unpacked layer no image references, and
        dead processes' leftovers; returns the bytes reclaimed."""
        with self._store_lock.exclusive():
            with self.index.editing() as tags:
                keep = self._with_ancestors(set(tags.values()) | set(in_use))
                for image_id in self.index.ids():
                    if image_id not in keep:
                        self.index.drop(image_id)
            return self._collect_garbage()

    def _with_ancestors(self, image_ids: set[str]) -> set[str]:
        """`image_ids` and every recorded parent of them, transitively."""
        found: set[str] = set()
        todo = list(image_ids)
        while todo:
            image_id = todo.pop()
            if image_id in found:
                continue
            found.add(image_id)
            parent = self._record_or_empty(image_id).get("parent")
            if parent:
                todo.append(parent)
        return found

    def _record_or_empty(self, image_id: str) -> dict:
        """The image's record; {} when it is missing or damaged (nothing to follow)."""
        try:
            return self.index.record(image_id) or {}
        except CorruptedBlob:
            return {}

    def _referenced(self) -> tuple[set[str], set[str]]:
        """(blob digests, layer ChainIDs) the recorded images need."""
        blobs: set[str] = set()
        chains: set[str] = set()
        for image_id in self.index.ids():
            record = self._record_or_empty(image_id)
            blobs.update((image_id, record.get("manifest", image_id)))
            try:
                config = json.loads(self.blobs.read_bytes(image_id))
            except CorruptedBlob:
                continue
            diff_ids = config.get("rootfs", {}).get("diff_ids", [])
            blobs.update(diff_ids)
            chains.update(oci.chain_ids(diff_ids))
        return blobs, chains

    def _collect_garbage(self) -> int:
        """Delete unreferenced blobs and layers (caller holds the store lock exclusively)."""
        blobs, chains = self._referenced()
        freed = sum(self.blobs.remove(d) for d in list(self.blobs.digests()) if d not in blobs)
        freed += sum(self.layers.remove(c) for c in self.layers.chain_ids() if c not in chains)
        return freed + sweep_dead_temps(self._tmp)

    def disk_usage(self) -> dict:
        """Space used, for `isobox df`.

        - "images": count, tagged, "size" (every blob once), and as Docker's `system df`
          counts layers: "layers_size" (each layer once however many images stack it),
          "shared_size" (layers that more than one image stacks) and "unique_size".
        - "per_image": for each image (newest first) its id, tags, "size" (its layers and
          config), "shared_size" (its layers another image stacks too) and "unique_size"
          (the rest): Docker's Size, SharedSize and Size - SharedSize.
        - "layers": unpacked layers (count, size); "reclaimable": what `prune` with no
          container would free.
        A layer is shared when its ChainID (the layer and all below it) is in several images,
        as Docker counts; an image with a damaged config counts with size 0.
        """
        tags = self.index.tags()
        ids = self.index.ids()
        all_blobs = {d: self.blobs.size(d) for d in self.blobs.digests()}
        tagged_ids = set(tags.values()) & set(ids)
        stored: list[StoredImage] = []
        for image_id in ids:
            try:
                stored.append(self._stored(image_id, tags))
            except (CorruptedBlob, ImageNotFound):
                continue
        users: dict[str, int] = {}  # ChainID -> how many images stack it
        layer_size: dict[str, int] = {}
        for image in stored:
            for chain_id, size in zip(image.chain_ids, image.layer_sizes):
                users[chain_id] = users.get(chain_id, 0) + 1
                layer_size[chain_id] = size
        per_image = []
        for image in sorted(stored, key=lambda i: i.config.get("created") or "", reverse=True):
            size = image.size + all_blobs.get(image.id, 0)
            shared = sum(s for c, s in zip(image.chain_ids, image.layer_sizes) if users[c] > 1)
            per_image.append({"id": image.id, "tags": image.tags, "size": size,
                              "shared_size": shared, "unique_size": size - shared,
                              "created": image.config.get("created")})
        kept_blobs: set[str] = set()
        kept_chains: set[str] = set()
        for image in stored:
            if image.id in tagged_ids:
                kept_blobs.update((image.id, image.manifest_digest, *image.diff_ids))
                kept_chains.update(image.chain_ids)
        layers = {c: self.layers.size(c) for c in self.layers.chain_ids()}
        reclaimable = (sum(s for d, s in all_blobs.items() if d not in kept_blobs)
                       + sum(s for c, s in layers.items() if c not in kept_chains))
        shared_total = sum(s for c, s in layer_size.items() if users[c] > 1)
        layers_total = sum(layer_size.values())
        return {
            "images": {"count": len(ids), "tagged": len(tagged_ids),
                       "size": sum(all_blobs.values()), "layers_size": layers_total,
                       "shared_size": shared_total, "unique_size": layers_total - shared_total},
            "per_image": per_image,
            "layers": {"count": len(layers), "size": sum(layers.values())},
            "reclaimable": reclaimable,
        }

    def verify(self, image_id: str) -> None:
        """Check every blob of an image against its digest and every unpacked layer against its
        blob; unpack again layers that are missing or differ, remake damaged layer blobs from
        intact unpacked layers when that reproduces the digest (layers this store wrote).
        CorruptedBlob names what cannot be repaired."""
        image = self.resolve(image_id)
        self.blobs.verify(image.manifest_digest)
        with self._store_lock.shared():
            for chain_id, diff_id in zip(image.chain_ids, image.diff_ids):
                try:
                    self.blobs.verify(diff_id)
                except CorruptedBlob:
                    if not self._rebuild_layer_blob(chain_id, diff_id):
                        raise
                self.layers.ensure(chain_id, diff_id)
                if self.layers.differences(chain_id, diff_id):
                    self.layers.rebuild(chain_id, diff_id)

    def _rebuild_layer_blob(self, chain_id: str, diff_id: str) -> bool:
        """Remake a damaged layer blob from its unpacked dir; True if the digest matches.

        Works for layers this store wrote (commits, directory imports): our tars are
        deterministic and unpacking keeps everything they record.
        """
        if not self.layers.is_ready(chain_id, diff_id):
            return False
        from pytest_isobox.images.tartree import write_tree

        with self.blobs.writer() as writer:
            write_tree(self.layers.diff_dir(chain_id), writer.stream, overlay_diff=True)
            try:
                writer.commit(expected=diff_id)
            except CorruptedBlob:
                return False
        return True

    # ------------------------------------------------------------------ registries

    def producing(self, key: str) -> AbstractContextManager[object]:
        """The lock held while producing `key` (e.g. one pulled blob), between processes."""
        return key_lock(self._locks, key)

    def writing(self) -> AbstractContextManager[None]:
        """The store lock, shared: held while blobs are written that no image records yet."""
        return self._store_lock.shared()

    def repo_digests(self, image_id: str) -> list[str]:
        """`name@sha256:…` of the manifests registries served this image as."""
        return list(self._record_or_empty(image_id).get("repo_digests", ()))

    def pull(self, ref: str, progress: object = None, *, platform: str | None = None) -> str:
        """Pull `ref` from its registry (see images.registry.pull); returns the image id."""
        from pytest_isobox.images.registry.pull import pull_image

        return pull_image(self, ref, progress=progress,  # type: ignore[arg-type]
                          platform=platform)

    def push(self, ref: str, progress: object = None, *, chunk_size: int | None = None) -> str:
        """Push the image tagged `ref` to its registry; returns the manifest digest."""
        from pytest_isobox.images.registry.push import push_image

        return push_image(self, ref, progress=progress,  # type: ignore[arg-type]
                          chunk_size=chunk_size)

    # ------------------------------------------------------------------ archives

    def save(self, refs: list[str], path: str | Path | IO[bytes]) -> None:
        """Write a `docker save` archive of `refs` that `docker load` (20.10 and 25+) accepts."""
        from pytest_isobox.images.archive import save_archive

        save_archive(self, refs, path)

    def load(self, path: str | Path | IO[bytes]) -> list[str]:
        """Load a `docker save` archive (legacy or OCI layout, plain or gzip layers).

        Returns the tags loaded, or the ids of images that came without a tag.
        """
        from pytest_isobox.images.archive import load_archive

        with self._store_lock.shared():
            return load_archive(self, path)
