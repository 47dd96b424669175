"""Every cross-process lock of isobox, in one module (nothing else calls flock or fcntl locks).

All are kernel locks on an open file description: the kernel drops them when their holder
dies (kill -9 included), so no stale lock file ever needs a sweep, and none leaves a file per
key. filelock is not used: it offers neither byte-range keys, nor reader/writer locks, nor a
reentrancy that survives fork.

- `HostLock`: a plain exclusive lock on one file (the network registry, the container sweep,
  the shared-container registry of a test run, the rootless holder), reentrant within a
  thread, exclusive across threads and processes; a forked child starts unlocked. Its file is
  open only while held, so engines opened and closed many times in one process (a test
  suite) hold no descriptor for it.
- `key_lock`: one lock per thing being produced (a layer's ChainID, a build step's key, the
  tag index), held only while producing it; readers of finished things never take it. All
  keys of a directory share one lock file, each locking its own byte (an open-file-description
  lock, F_OFD_SETLKW), so taking a lock creates no file and a store's lock dir stays at a
  handful of files however many keys it has seen.
- `StoreLock`: a store-wide reader/writer lock (flock). Everything that writes blobs, layers or
  image records holds it shared, so they run in parallel; `prune` holds it exclusive, so it
  never deletes a blob another process has written but not yet recorded.

Key and store locks work between threads as between processes. Neither is re-entrant: taking
a lock its holder already holds waits forever.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Self

from pytest_isobox.sha256 import sha256  # (the C sha256 alone: no OpenSSL load)

KEYS_FILE = "keys.lock"
# struct flock on Linux (64-bit off_t): l_type, l_whence, l_start, l_len, l_pid, padding
_FLOCK = struct.Struct("hhqqi4x")
_OFD_SETLKW = getattr(fcntl, "F_OFD_SETLKW", 38)


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


class HostLock:
    """An exclusive flock on a file, reentrant within a thread, exclusive across threads and
    processes. A fork (the runtime's monitor is a fork of the engine's process) starts
    unlocked with a descriptor of its own: an flock belongs to the open file, which a fork
    would share."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd = -1
        self._pid = 0
        self._depth = 0
        self._mutex = threading.RLock()

    def __enter__(self) -> Self:
        if self._pid != os.getpid():  # a fork: nothing of the parent's holds here
            self._mutex = threading.RLock()
            self._fd, self._pid, self._depth = -1, os.getpid(), 0
        self._mutex.acquire()
        try:
            if self._depth == 0:
                self._fd = _open_lock_file(self.path)
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(self._fd)
                    self._fd = -1
                    raise
            self._depth += 1
        except BaseException:
            self._mutex.release()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # drops the flock; a lock kept idle would hold an fd per object
        self._mutex.release()


class KeyLock:
    """An exclusive lock on one key, safe across processes and threads (see module doc)."""

    def __init__(self, path: Path, key: str) -> None:
        self._path = path
        # 2**56 bytes to choose from: two keys share a byte with negligible odds
        self._offset = int.from_bytes(sha256(key.encode()).digest()[:7], "big")
        self._fd: int | None = None

    def __enter__(self) -> Self:
        fd = _open_lock_file(self._path)
        try:
            fcntl.fcntl(fd, _OFD_SETLKW, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET,
                                                     self._offset, 1, 0))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the description drops its locks


def key_lock(locks_dir: Path, key: str) -> KeyLock:
    """The lock for producing `key` (any string) among the keys of `locks_dir`."""
    return KeyLock(locks_dir / KEYS_FILE, key)


class StoreLock:
    """Shared for producers, exclusive for garbage collection; safe across processes."""

    def __init__(self, locks_dir: Path) -> None:
        self._path = locks_dir / "store.lock"

    @contextmanager
    def _hold(self, mode: int) -> Iterator[None]:
        fd = _open_lock_file(self._path)
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
