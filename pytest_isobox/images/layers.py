"""Unpacked layers: `layers/<chainid hex>/diff`, overlay lower directories.

Each `diff` holds only its own layer's content, deletions as overlay whiteouts; overlay stacks
them. Keyed by ChainID, so identical stacks share their directories. A layer directory is
built in `tmp/` (blob verified while it is read) and renamed into place with its marker
`layer.json`: one that exists with a valid marker is complete. A missing or damaged marker
makes the directory be rebuilt. One key lock per ChainID: a layer is unpacked once however
many processes ask for it at the same moment. What a user namespace could not reproduce
(owners it does not map, device nodes) is logged and kept as `notes` in the marker. A commit
whose caller hands over the container's upper dir has it renamed into place (`adopt`): no
copy, no unpacking.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.images.atomic import remove_path, temp_path, write_file_atomic
from pytest_isobox.images.blobs import BlobStore, CorruptedBlob
from pytest_isobox.images.whiteouts import is_overlay_xattr
from pytest_isobox.locks import StoreLock, key_lock

MARKER = "layer.json"
DIFF = "diff"


class LayerStore:
    """Unpacked layer directories under `root`, produced from verified blobs."""

    def __init__(self, root: Path, blobs: BlobStore, store_lock: StoreLock, locks_dir: Path,
                 tmp_dir: Path) -> None:
        self.root = root
        self._blobs = blobs
        self._store_lock = store_lock
        self._locks_dir = locks_dir
        self._tmp = tmp_dir
        root.mkdir(parents=True, exist_ok=True)

    def diff_dir(self, chain_id: str) -> Path:
        return self.root / _hex(chain_id) / DIFF

    def marker(self, chain_id: str) -> dict | None:
        """The layer's marker if it is present and well formed, else None."""
        try:
            doc = json.loads((self.root / _hex(chain_id) / MARKER).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("chain_id") != chain_id:
            return None
        return doc

    def is_ready(self, chain_id: str, diff_id: str) -> bool:
        marker = self.marker(chain_id)
        return (marker is not None and marker.get("diff_id") == diff_id
                and self.diff_dir(chain_id).is_dir())

    def ensure(self, chain_id: str, diff_id: str) -> Path:
        """The layer's lower dir, unpacked from its blob first if needed (locked, verified)."""
        if self.is_ready(chain_id, diff_id):
            return self.diff_dir(chain_id)
        with self._store_lock.shared(), key_lock(self._locks_dir, f"layer-{_hex(chain_id)}"):
            if not self.is_ready(chain_id, diff_id):
                self._unpack(chain_id, diff_id)
        return self.diff_dir(chain_id)

    def differences(self, chain_id: str, diff_id: str) -> list[str]:
        """Paths where the unpacked layer no longer matches its (verified) blob; [] if intact."""
        import tarfile  # (tar code loads where a tar is read, not where a container starts)

        from pytest_isobox.images.layercheck import differences

        source, reader = self._blobs.open_verified(diff_id, f"layer blob {diff_id}")
        with source:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                found = differences(self.diff_dir(chain_id), tar)
            reader.finish()
        return found

    def rebuild(self, chain_id: str, diff_id: str) -> Path:
        """Unpack the layer again from its blob, replacing what is there (locked)."""
        with self._store_lock.shared(), key_lock(self._locks_dir, f"layer-{_hex(chain_id)}"):
            self._unpack(chain_id, diff_id)
        return self.diff_dir(chain_id)

    def adopt(self, chain_id: str, diff_id: str, source: Path, content_bytes: int) -> bool:
        """Make `source` (an overlay upper dir already made a lower dir holding exactly the
        layer blob's content, see `tartree.write_handover_tree`) the layer's dir by renaming
        it. True when the layer is ready afterwards: moved, or found there already (then
        `source` is left to its owner to delete); False when it lies on another filesystem."""
        with self._store_lock.shared(), key_lock(self._locks_dir, f"layer-{_hex(chain_id)}"):
            if self.is_ready(chain_id, diff_id):
                return True
            self._tmp.mkdir(parents=True, exist_ok=True)
            work = temp_path(self._tmp, "layer")
            try:
                work.mkdir()
                try:
                    os.rename(source, work / DIFF)
                except OSError as exc:
                    if exc.errno == errno.EXDEV:
                        return False
                    raise
                os.chmod(work, 0o755)
                os.chmod(work / DIFF, 0o755)
                _drop_overlay_xattrs(work / DIFF)
                marker = {"chain_id": chain_id, "diff_id": diff_id, "size": content_bytes}
                write_file_atomic(work / MARKER, json.dumps(marker).encode(), self._tmp,
                                  durable=False)
                self._replace(work, self.root / _hex(chain_id))
            finally:
                remove_path(work)
        return True

    def _unpack(self, chain_id: str, diff_id: str) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        work = temp_path(self._tmp, "layer")
        try:
            (work / DIFF).mkdir(parents=True)
            os.chmod(work, 0o755)
            os.chmod(work / DIFF, 0o755)
            size, notes = self._extract_blob(diff_id, work / DIFF)
            marker = {"chain_id": chain_id, "diff_id": diff_id, "size": size}
            if notes:
                marker["notes"] = notes
                import logging

                for note in notes:
                    logging.getLogger(__name__).warning("layer %s: %s", diff_id, note)
            write_file_atomic(work / MARKER, json.dumps(marker).encode(), self._tmp,
                              durable=False)
            self._replace(work, self.root / _hex(chain_id))
        finally:
            remove_path(work)

    def _extract_blob(self, diff_id: str, dest: Path) -> tuple[int, list[str]]:
        import tarfile

        from pytest_isobox.images.tarsafe import TarExtractor

        source, reader = self._blobs.open_verified(diff_id, f"layer blob {diff_id}")
        extractor = TarExtractor(dest, overlay_whiteouts=True)
        with source:
            try:
                with tarfile.open(fileobj=reader, mode="r|") as tar:
                    extractor.extract_all(tar)
            except (tarfile.TarError, EOFError) as exc:
                reader.finish()  # a damaged blob is reported as such
                raise InvalidSpec(f"layer {diff_id} is not a valid tar: {exc}") from None
            finally:
                extractor.close()
            reader.finish()
        return extractor.content_bytes, extractor.notes

    def _replace(self, work: Path, target: Path) -> None:
        if target.exists():  # a damaged copy: move it aside, then drop it
            aside = temp_path(self._tmp, "stale-layer")
            os.rename(target, aside)
            remove_path(aside)
        os.rename(work, target)

    def remove(self, chain_id: str) -> int:
        """Delete an unpacked layer (moved aside first, so it vanishes at once); bytes freed."""
        target = self.root / _hex(chain_id)
        marker = self.marker(chain_id) or {}
        aside = temp_path(self._tmp, "removed-layer")
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            return 0
        remove_path(aside)
        return int(marker.get("size", 0))

    def chain_ids(self) -> list[str]:
        """ChainIDs of the layer directories present."""
        return [f"sha256:{name}" for name in sorted(os.listdir(self.root))
                if re.fullmatch(r"[0-9a-f]{64}", name)]

    def size(self, chain_id: str) -> int:
        return int((self.marker(chain_id) or {}).get("size", 0))


def _drop_overlay_xattrs(path: Path) -> None:
    """Overlay's bookkeeping on an upper dir's root has no meaning on a lower dir."""
    for name in os.listxattr(path):
        if is_overlay_xattr(name):
            os.removexattr(path, name)


def _hex(digest: str) -> str:
    hex_part = digest.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", hex_part):
        raise CorruptedBlob(f"invalid layer id {digest!r}")
    return hex_part
