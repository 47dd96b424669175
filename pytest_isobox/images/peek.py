"""A look at the image store's files without opening the store: which image a tag or an id
names, and that image's config, for a process that only checks (a fully cached build).

ImageStore's constructor makes its directories and sweeps dead temps, and its imports (the
layer and tar code, dataclasses) cost more than docker's whole cached build. This reads
`tags.json`, `imagedb/<hex>` and the manifest and config blobs with `json` and sha256,
checked as the store checks them (a record naming its manifest, blobs matching their
digests). None means "not sure" (missing, damaged, a reference form it does not read): the
store then answers, with its own errors.
"""

from __future__ import annotations

import json
import os

from pytest_isobox.sha256 import sha256

_HEX = frozenset("0123456789abcdef")


def parse_tags(data: bytes) -> dict[str, str]:
    """`tags.json`'s tag -> image id; ValueError when it is not that (ImageIndex's reader)."""
    tags = json.loads(data)
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ValueError("expected an object of tag -> image id")
    return tags


def _is_id(ref: str) -> bool:
    return len(ref) == 71 and ref.startswith("sha256:") and _HEX.issuperset(ref[7:])


class StorePeek:
    """Reads of one store (`home`, the rootful engine's layout: images/store.py)."""

    def __init__(self, home: str) -> None:
        self.home = home
        self._tags: dict[str, str] | None = None

    def tags(self) -> dict[str, str] | None:
        """tag -> image id as last written, None when damaged (read once)."""
        if self._tags is None:
            try:
                with open(os.path.join(self.home, "tags.json"), "rb") as f:
                    self._tags = parse_tags(f.read())
            except FileNotFoundError:
                self._tags = {}
            except (OSError, ValueError):
                return None
        return self._tags

    def tagged(self, tag: str) -> str | None:
        """The image id a normalised tag names (images/reference.normalize_tag's form)."""
        tags = self.tags()
        image_id = tags.get(tag) if tags else None
        return image_id if image_id is not None and self._record(image_id) else None

    def find(self, ref: str) -> str | None:
        """The image id `ref` names, as ImageStore.find answers for a full id or a tag (a
        name with or without its tag), else None."""
        if _is_id(ref):
            return ref if self._record(ref) else None
        from pytest_isobox.engine import InvalidSpec
        from pytest_isobox.images.reference import parse_reference

        try:
            parsed = parse_reference(ref)
        except InvalidSpec:
            return None
        return None if parsed.digest is not None else self.tagged(str(parsed))

    def config(self, image_id: str) -> dict | None:
        """The image's config document, read as ImageStore.resolve reads it (record, then
        manifest and config blobs verified against their digests), else None."""
        record = self._record(image_id)
        manifest = record.get("manifest") if record else None
        if not isinstance(manifest, str) or self._blob(manifest) is None:
            return None
        config = self._blob(image_id)
        return config if isinstance(config, dict) else None

    def _record(self, image_id: str) -> dict | None:
        if not _is_id(image_id):
            return None
        try:
            with open(os.path.join(self.home, "imagedb", image_id[7:]), "rb") as f:
                record = json.loads(f.read())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _blob(self, digest: str) -> object:
        """A small blob's JSON, None unless it is there and matches its digest."""
        if not _is_id(digest):
            return None
        try:
            with open(os.path.join(self.home, "oci", "blobs", "sha256", digest[7:]), "rb") as f:
                data = f.read()
        except OSError:
            return None
        if sha256(data).hexdigest() != digest[7:]:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None
