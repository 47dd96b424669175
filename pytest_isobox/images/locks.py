"""Locks that let many processes share one store.

- `key_lock`: one filelock per thing being produced (a layer's ChainID, the tag index), held
  only while producing it; readers of finished things never take it.
- `StoreLock`: a store-wide reader/writer lock (flock). Everything that writes blobs, layers or
  image records holds it shared, so they run in parallel; `prune` holds it exclusive, so it
  never deletes a blob another process has written but not yet recorded.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from filelock import FileLock


def key_lock(locks_dir: Path, key: str) -> FileLock:
    """The lock for producing `key` (a short, filename-safe string)."""
    locks_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks_dir / f"{key}.lock"))


class StoreLock:
    """Shared for producers, exclusive for garbage collection; safe across processes."""

    def __init__(self, locks_dir: Path) -> None:
        self._path = locks_dir / "store.lock"

    @contextmanager
    def _hold(self, mode: int) -> Iterator[None]:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    def shared(self) -> AbstractContextManager[None]:
        """Held while producing blobs, layers and image records."""
        return self._hold(fcntl.LOCK_SH)

    def exclusive(self) -> AbstractContextManager[None]:
        """Held while deleting what nothing references."""
        return self._hold(fcntl.LOCK_EX)
