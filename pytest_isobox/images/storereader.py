"""`StoreReader`: the image list, one image's record and config, read from the store's files
alone (tags.json, imagedb/<hex>, the config and manifest blobs), for the read-only verbs and a
fully cached build (native/buildfront.py).

`images.store` imports the layer, tar and registry plumbing and its `ImageStore()` makes and
sweeps folders: about 15 ms before `isobox images` reads anything, half of what `docker
images` takes in all. This reads what `ImageStore.images`, `resolve` and `repo_digests` read,
the same way (blobs verified against their digests), with `json` and a sha256; whenever the
answer would be anything but a plain success (a damaged record or blob, a reference that is
not a stored tag nor a full id, an image that is not there) it raises `Unsure`, and the
caller asks the real store, whose answer or error is then the one given.
tests/native/test_reader.py compares the two.
"""

from __future__ import annotations

import json
import os

from pytest_isobox.engine.records import ImageInfo
from pytest_isobox.sha256 import sha256  # (the C sha256 alone: no OpenSSL load)

_HEX = frozenset("0123456789abcdef")


def parse_tags(data: bytes) -> dict[str, str]:
    """`tags.json`'s tag -> image id; ValueError when it is not that (ImageIndex's reader too)."""
    tags = json.loads(data)
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ValueError("expected an object of tag -> image id")
    return tags


class Unsure(Exception):
    """Not a plain answer from the files: the real store answers (or raises)."""


def _is_hex64(text: str) -> bool:
    return len(text) == 64 and _HEX.issuperset(text)


class StoreReader:
    """The lookups of `ImageStore` in `home` that only read (see the module docstring)."""

    def __init__(self, home: str) -> None:
        self._records = os.path.join(home, "imagedb")
        self._blobs = os.path.join(home, "oci", "blobs", "sha256")
        self._tags_path = os.path.join(home, "tags.json")
        self._tags: dict[str, str] | None = None

    def tags(self) -> dict[str, str]:
        """tags.json (tag -> image id), as ImageIndex.tags reads it."""
        if self._tags is None:
            try:
                with open(self._tags_path, "rb") as f:
                    tags = parse_tags(f.read())
            except FileNotFoundError:
                tags = {}
            except (OSError, ValueError):
                raise Unsure from None  # (the store names the damage)
            self._tags = tags
        return self._tags

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self._records)
        except FileNotFoundError:
            return []  # (a home no image store was opened in yet)
        return sorted(f"sha256:{name}" for name in names if _is_hex64(name))

    def record(self, image_id: str) -> dict:
        """imagedb/<hex>: the image's record; Unsure if missing or damaged."""
        hex_part = image_id.removeprefix("sha256:")
        if not _is_hex64(hex_part):
            raise Unsure
        try:
            with open(os.path.join(self._records, hex_part), "rb") as f:
                doc = json.loads(f.read())
        except (OSError, ValueError):
            raise Unsure from None
        if not isinstance(doc, dict) or not isinstance(doc.get("manifest"), str):
            raise Unsure
        return doc

    def _blob(self, digest: str) -> dict:
        """A small blob's JSON, verified against its digest (BlobStore.read_bytes)."""
        hex_part = digest.removeprefix("sha256:") if isinstance(digest, str) else ""
        if not digest.startswith("sha256:") or not _is_hex64(hex_part):
            raise Unsure
        try:
            with open(os.path.join(self._blobs, hex_part), "rb") as f:
                data = f.read()
        except OSError:
            raise Unsure from None
        if sha256(data).hexdigest() != hex_part:
            raise Unsure
        try:
            doc = json.loads(data)
        except ValueError:
            raise Unsure from None
        if not isinstance(doc, dict):
            raise Unsure
        return doc

    def info(self, image_id: str) -> ImageInfo:
        """As ImageStore._stored, then ImagesRole.image_inspect: id, tags, config, size,
        created."""
        record = self.record(image_id)
        manifest = self._blob(record["manifest"])
        config = self._blob(image_id)
        try:
            size = sum(layer["size"] for layer in manifest.get("layers", []))
        except (KeyError, TypeError):
            raise Unsure from None
        tags = sorted(t for t, i in self.tags().items() if i == image_id)
        return ImageInfo(image_id, tags, config, size, config.get("created"))

    def config(self, image_id: str) -> dict:
        """The image's config, read as ImageStore.resolve reads it (the record, then its
        manifest and config blobs verified against their digests)."""
        self._blob(self.record(image_id)["manifest"])
        return self._blob(image_id)

    def stored_tag(self, ref: str) -> str:
        """The key of tags.json that `ref` names as written (`name` is `name:latest`); Unsure
        if none. The keys are normalize_tag's forms, so the one found is normalize_tag(ref),
        with no reference grammar to compile (a regex: about 0.5 ms of a cached build).
        A bare 64-hex id and a digest are never tags: Unsure."""
        if _is_hex64(ref) or "@" in ref:
            raise Unsure
        tags = self.tags()
        if ref in tags:
            return ref
        if ":" not in ref.rpartition("/")[2] and f"{ref}:latest" in tags:
            return f"{ref}:latest"
        raise Unsure

    def tagged(self, tag: str) -> str:
        """The image id a normalised tag (images/reference.normalize_tag's form) names."""
        image_id = self.tags().get(tag)
        if image_id is None:
            raise Unsure
        self.record(image_id)
        return image_id

    def images(self) -> list[ImageInfo]:
        """ImageStore.images: every image, newest first."""
        found = [self.info(image_id) for image_id in self.ids()]
        return sorted(found, key=lambda info: info.created or "", reverse=True)

    def find(self, ref: str) -> str:
        """The id `ref` names as ImageStore._find finds it by a full id or a stored tag
        (`name` is `name:latest`); Unsure for anything else (prefixes, digests, absent)."""
        if ref.startswith("sha256:") and len(ref) == 71:
            image_id = ref
        else:
            image_id = self.tags()[self.stored_tag(ref)]
        if not os.path.isfile(os.path.join(self._records, image_id.removeprefix("sha256:"))):
            raise Unsure
        return image_id

    def repo_digests(self, image_id: str) -> list[str]:
        return list(self.record(image_id).get("repo_digests", ()))
