"""Content-addressed blobs in an OCI image layout (`oci/blobs/sha256/<hex>`).

A blob appears only complete (temp file, rename; layers are fsynced first) and is checked
against its digest whenever it is read for use: a corrupted or truncated blob raises
CorruptedBlob and is never handed out. Writing a blob that already exists replaces it, so a
rewrite heals a damaged copy. The directory is not fsynced after the rename, nor are small
documents (`put_bytes`: configs, manifests) before it: one lost or truncated by a machine
crash is missing or fails its digest, which reads report like any damage.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Self

from pytest_isobox.engine import IsoboxError
from pytest_isobox.images.atomic import remove_path, temp_path, write_file_atomic
from pytest_isobox.sha256 import sha256 as small_sha256  # (the C sha256 alone: no OpenSSL load)

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CHUNK = 1 << 20
_SMALL_BLOB = 1 << 20  # configs and manifests: kept in memory once verified
_SMALL_CACHE_ENTRIES = 1024
OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}


class CorruptedBlob(IsoboxError):
    """A stored or archived blob does not match its digest (damaged, truncated, or missing)."""


def check_digest(digest: str) -> str:
    """`digest` if it is a well-formed sha256 digest, else CorruptedBlob naming it."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise CorruptedBlob(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


def sha256_digest(data: bytes) -> str:
    """Small data (configs, manifests, chain IDs: what a `run` verifies) through the C
    built-in sha256, which costs no load; big data through OpenSSL's (2-3 ms to load, several
    times faster on megabytes), as the streams below."""
    if len(data) <= _SMALL_BLOB:
        return "sha256:" + small_sha256(data).hexdigest()
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _stream_sha256():  # -> hashlib's sha256 object (layers: OpenSSL's speed counts)
    import hashlib

    return hashlib.sha256()


class HashingWriter:
    """A write-only stream that hashes and counts what passes through to `out`."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._hash = _stream_sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self._out.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class HashingReader:
    """A read-only stream that hashes what is read; `finish` reads the rest and checks it."""

    def __init__(self, source: IO[bytes], expected: str, what: str) -> None:
        self._source = source
        self._hash = _stream_sha256()
        self._expected = expected
        self._what = what
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._hash.update(data)
        self.size += len(data)
        return data

    def finish(self) -> None:
        """Consume the remainder, then raise CorruptedBlob unless the digest matches."""
        while chunk := self.read(_CHUNK):
            del chunk
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._expected:
            raise CorruptedBlob(
                f"{self._what}: content has digest {actual}, expected {self._expected} "
                "(digest mismatch: damaged or truncated)"
            )


class BlobWriter:
    """A blob being written: hashed as it goes, published by `commit`, discarded otherwise."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs
        self._tmp = temp_path(blobs.tmp_dir, "blob")
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed by commit/discard
        self._published = False
        self.stream = HashingWriter(self._file)

    def commit(self, expected: str | None = None, what: str = "blob", *,
               durable: bool = True) -> str:
        """Publish the blob under its digest; CorruptedBlob if it differs from `expected`.

        `durable` fsyncs the content before the rename (a machine crash cannot leave it
        truncated); the rename alone is atomic against a killed process."""
        try:
            self._file.flush()
            if durable:
                os.fsync(self._file.fileno())
            self._file.close()
            digest = self.stream.digest
            if expected is not None and digest != expected:
                raise CorruptedBlob(
                    f"{what}: content has digest {digest}, expected {expected} "
                    "(damaged or truncated)"
                )
            os.replace(self._tmp, self._blobs.path(digest))
            self._published = True
            return digest
        finally:
            self.discard()

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        if not self._published:
            self._published = True  # once is enough
            remove_path(self._tmp)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


class BlobStore:
    """The `blobs/sha256` part of an OCI image layout rooted at `root`."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root
        self.tmp_dir = tmp_dir
        self._dir = root / "blobs" / "sha256"
        self._verified: dict[str, tuple[int, int, int]] = {}
        self._small: dict[str, tuple[tuple[int, int, int], bytes]] = {}

    def ensure_layout(self) -> None:
        """Create the layout directories and `oci-layout` file if they are missing."""
        self._dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            write_file_atomic(layout, json.dumps(OCI_LAYOUT).encode(), self.tmp_dir)

    def path(self, digest: str) -> Path:
        return self._dir / check_digest(digest).removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put_bytes(self, data: bytes) -> str:
        """Store `data` (a small document, re-verified on every read); returns its digest.

        Published by rename like every blob, without fsync (see the module docstring)."""
        digest = sha256_digest(data)
        tmp = temp_path(self.tmp_dir, "blob")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                st = os.fstat(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path(digest))
        except BaseException:
            remove_path(tmp)
            raise
        self._remember(digest, (st.st_ino, st.st_size, st.st_mtime_ns), data)
        return digest

    def read_bytes(self, digest: str) -> bytes:
        """The blob's content, verified against its digest (for small blobs: configs, manifests).

        A verified copy is reused while the file keeps its inode, size and mtime.
        """
        path = self.path(digest)
        try:
            with open(path, "rb") as source:
                st = os.fstat(source.fileno())
                stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
                cached = self._small.get(digest)
                if cached and cached[0] == stamp:
                    return cached[1]
                data = source.read()
        except FileNotFoundError:
            raise CorruptedBlob(f"blob {digest} is missing from {self._dir}") from None
        if sha256_digest(data) != digest:
            raise CorruptedBlob(
                f"blob {digest} at {path} does not match its digest (damaged or truncated)"
            )
        self._remember(digest, stamp, data)
        return data

    def _remember(self, digest: str, stamp: tuple[int, int, int], data: bytes) -> None:
        if len(data) <= _SMALL_BLOB:
            if len(self._small) >= _SMALL_CACHE_ENTRIES:
                self._small.clear()
            self._small[digest] = (stamp, data)

    def open_verified(self, digest: str, what: str = "") -> tuple[IO[bytes], HashingReader]:
        """Open a blob for streaming; call the reader's `finish()` before trusting what was read."""
        path = self.path(digest)
        try:
            source = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise CorruptedBlob(f"blob {digest} is missing from {self._dir}") from None
        return source, HashingReader(source, digest, what or f"blob {digest} at {path}")

    def verify(self, digest: str) -> None:
        """Hash the whole blob; CorruptedBlob unless it matches. Cached while the file is unchanged."""
        path = self.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise CorruptedBlob(f"blob {digest} is missing from {self._dir}") from None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._verified.get(digest) == stamp:
            return
        source, reader = self.open_verified(digest)
        with source:
            reader.finish()
        self._verified[digest] = stamp

    def remove(self, digest: str) -> int:
        """Delete a blob; returns the bytes freed."""
        path = self.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        self._verified.pop(digest, None)
        self._small.pop(digest, None)
        return size

    def digests(self) -> Iterator[str]:
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            return
        for name in names:
            if re.fullmatch(r"[0-9a-f]{64}", name):
                yield f"sha256:{name}"
