"""Which images exist and which tags name them.

- `imagedb/<id hex>`: one small record per image (its manifest digest), created by rename and
  never rewritten, so recording a build step's image touches no shared file. Not fsynced: the
  config and manifest it names are not either, so a machine crash may lose a recent image
  whatever we do; a record it leaves empty or cut short reads as damaged (CorruptedBlob), and
  prune drops it unless a tag names it.
- `tags.json`: tag -> image id, rewritten atomically (and durably) under a key lock.
- `oci/index.json`: derived from the tags for OCI tools (every tagged image, annotated with
  its names), rewritten with `tags.json`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_isobox.engine import IsoboxError
from pytest_isobox.images import config as oci
from pytest_isobox.images.atomic import write_file_atomic, write_json_atomic
from pytest_isobox.images.blobs import CorruptedBlob
from pytest_isobox.images.reference import parse_reference
from pytest_isobox.images.storereader import parse_tags
from pytest_isobox.locks import key_lock

_HEX = re.compile(r"[0-9a-f]{64}")


class ImageIndex:
    """Image records and tags under `home`; safe for many processes at once."""

    def __init__(self, home: Path, oci_root: Path, tmp_dir: Path, locks_dir: Path) -> None:
        self._records = home / "imagedb"
        self._tags_path = home / "tags.json"
        self._oci_index = oci_root / "index.json"
        self._tmp = tmp_dir
        self._locks = locks_dir
        self._records.mkdir(parents=True, exist_ok=True)
        self._cache: tuple[tuple[int, int, int], dict[str, str]] | None = None

    # ------------------------------------------------------------------ image records

    def _record_path(self, image_id: str) -> Path:
        hex_part = image_id.removeprefix("sha256:")
        if not _HEX.fullmatch(hex_part):
            raise IsoboxError(f"invalid image id {image_id!r}")
        return self._records / hex_part

    def record(self, image_id: str) -> dict | None:
        """The image's record ({"manifest", "manifest_size"} and "parent" when made from a base
        image), None if there is no such image; CorruptedBlob if the record is damaged."""
        path = self._record_path(image_id)
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise CorruptedBlob(f"{path}: damaged image record ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("manifest"), str):
            raise CorruptedBlob(f"{path}: damaged image record (no manifest digest)")
        return doc

    def has(self, image_id: str) -> bool:
        """Whether the image is recorded (its record may still turn out damaged)."""
        return self._record_path(image_id).is_file()

    def ids(self) -> list[str]:
        return sorted(f"sha256:{name}" for name in os.listdir(self._records) if _HEX.fullmatch(name))

    def add(self, image_id: str, record: dict) -> None:
        """Record an image (atomic: it appears complete or not at all; see the module doc
        for what a machine crash may do)."""
        write_file_atomic(self._record_path(image_id), json.dumps(record).encode(), self._tmp,
                          durable=False)

    def drop(self, image_id: str) -> None:
        try:
            self._record_path(image_id).unlink()
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ tags

    def tags(self) -> dict[str, str]:
        """tag -> image id, as last written (read without locking: it is replaced atomically)."""
        try:
            st = self._tags_path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._cache and self._cache[0] == stamp:
            return self._cache[1]
        try:
            tags = parse_tags(self._tags_path.read_bytes())
        except ValueError as exc:
            raise IsoboxError(f"{self._tags_path}: damaged image index ({exc}); "
                              "remove it to start with no tags") from None
        self._cache = (stamp, tags)
        return tags

    def tags_of(self, image_id: str, tags: dict[str, str] | None = None) -> list[str]:
        return sorted(t for t, i in (self.tags() if tags is None else tags).items()
                      if i == image_id)

    @contextmanager
    def editing(self) -> Iterator[dict[str, str]]:
        """A fresh copy of the tags to change, written back (with oci/index.json) on success.

        Holds the tags key lock throughout, so record drops made inside are ordered too.
        """
        with key_lock(self._locks, "tags"):
            self._cache = None
            tags = dict(self.tags())
            before = dict(tags)
            yield tags
            if tags != before:
                write_json_atomic(self._tags_path, tags, self._tmp)
            write_json_atomic(self._oci_index, self._oci_document(tags), self._tmp, durable=False)
            self._cache = None

    def _oci_document(self, tags: dict[str, str]) -> dict:
        manifests = []
        for tag, image_id in sorted(tags.items()):
            try:
                record = self.record(image_id)
            except CorruptedBlob:
                continue
            if record is None:
                continue
            ref = parse_reference(tag)
            manifests.append({
                "mediaType": oci.MEDIA_MANIFEST, "digest": record["manifest"],
                "size": record["manifest_size"],
                "annotations": {"io.containerd.image.name": f"{ref.full_name}:{ref.tag}",
                                "org.opencontainers.image.ref.name": ref.tag},
            })
        return {"schemaVersion": 2, "mediaType": oci.MEDIA_INDEX, "manifests": manifests}
