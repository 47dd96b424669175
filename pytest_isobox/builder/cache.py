"""The build cache: one key per instruction, mapped to the image that instruction produced.

Guarantees: entries appear atomically (temp file + rename) and are shared by every process
using the same cache dir; `lock(key)` serialises the builders of one step so that the same
image built by several processes at once is built once; a hit is only a hint until the caller
has checked that the image still exists. Entries are not fsynced: one lost to a machine crash
is a cache miss, and one pointing at an image the crash lost is forgotten on lookup.
"""

from __future__ import annotations

import os

from pytest_isobox.builder.context import StatCache
from pytest_isobox.sha256 import sha256

TYPE_CHECKING = False
if TYPE_CHECKING:  # (locks and secrets load only where a step is made)
    from pytest_isobox.locks import KeyLock

KEY_VERSION = "isobox-build-v2"


def step_key(parent: str, instruction: str, args: dict[str, str] | None = None,
             content: str = "") -> str:
    """sha256 of the parent (the image the step starts from, or the key of a FROM scratch
    before any image), the expanded instruction, the build args it uses (names and values)
    and, for COPY/ADD, the checksum of what it copies."""
    h = sha256(KEY_VERSION.encode())
    for part in (parent, instruction, content):
        h.update(b"\0" + part.encode())
    for name, value in sorted((args or {}).items()):
        h.update(f"\0{name}={value}".encode())
    return h.hexdigest()


class NotCached(Exception):
    """A cached-only build met a step it would have to make: the caller builds in full."""


class BuildCache:
    """key -> image id, under `cache_dir` (normally `$ISOBOX_HOME/buildcache`)."""

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.dir = os.fspath(cache_dir)  # (os.path, not pathlib: a cached build loads none)
        self._keys = os.path.join(self.dir, "keys")
        self._locks = os.path.join(self.dir, "locks")

    def get(self, key: str) -> str | None:
        """The image id recorded for key, or None."""
        try:
            with open(os.path.join(self._keys, key[:2], key)) as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    def put(self, key: str, image_id: str) -> None:
        """Record key -> image id atomically (a reader sees the old entry or the new one)."""
        import secrets

        folder = os.path.join(self._keys, key[:2])
        tmp = os.path.join(folder, f".tmp-{os.getpid()}-{secrets.token_hex(4)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, flags, 0o644)
        try:
            os.write(fd, image_id.encode())
        finally:
            os.close(fd)
        try:
            os.replace(tmp, os.path.join(folder, key))
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def forget(self, key: str) -> None:
        """Drop an entry whose image is gone."""
        try:
            os.unlink(os.path.join(self._keys, key[:2], key))
        except FileNotFoundError:
            pass

    def lock(self, key: str) -> KeyLock:
        """An inter-process lock for producing the image of one key (not re-entrant).

        All keys lock bytes of one file, so taking a step's lock creates no file; a builder
        holds one step lock at a time, so it never waits on itself.
        """
        from pathlib import Path

        from pytest_isobox.locks import key_lock

        return key_lock(Path(self._locks), key)

    def stat_cache(self, context_dir: str | os.PathLike) -> StatCache:
        """The stat cache of one context directory."""
        return StatCache.for_context(self.dir, context_dir)
