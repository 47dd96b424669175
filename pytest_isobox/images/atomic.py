"""Atomic publication: temp names owned by a live process, fsync, rename.

Everything the store makes is produced under `$ISOBOX_HOME/tmp/` with a name that records its
owner (pid and start time) and then renamed into place, so other processes see either nothing
or the finished thing. A process killed mid-way leaves only a temp entry, which any later
`sweep_dead_temps` removes once its owner is gone (a reused pid has another start time).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pytest_isobox.processes import ProcessIdentity

_OWNER: ProcessIdentity | None = None


def _owner() -> str:
    global _OWNER
    if _OWNER is None or _OWNER.pid != os.getpid():  # a forked child is another owner
        _OWNER = ProcessIdentity.current()
    return _OWNER.token("-")


def temp_path(tmp_dir: Path, what: str) -> Path:
    """A fresh name in `tmp_dir` owned by this process (nothing is created)."""
    return tmp_dir / f"{_owner()}-{os.urandom(6).hex()}.{what}"


def _owner_alive(name: str) -> bool:
    pid, _, rest = name.partition("-")
    owner = ProcessIdentity.parse(f"{pid}-{rest.partition('-')[0]}", "-")
    return owner is not None and owner.alive()


def has_temps_of(tmp_dir: Path, owner: ProcessIdentity) -> bool:
    """Whether `owner` left temp entries in `tmp_dir` (the run reaper's question)."""
    prefix = f"{owner.token('-')}-"
    try:
        return any(name.startswith(prefix) for name in os.listdir(tmp_dir))
    except FileNotFoundError:
        return False


def sweep_dead_temps(tmp_dir: Path) -> int:
    """Remove temp entries whose owner process is gone; returns bytes freed."""
    freed = 0
    try:
        names = os.listdir(tmp_dir)
    except FileNotFoundError:
        return 0
    for name in names:
        if _owner_alive(name):
            continue
        path = tmp_dir / name
        freed += tree_size(path)
        remove_path(path)
    return freed


def remove_path(path: Path) -> None:
    """Remove a file or a directory tree; missing parts are fine (another sweeper got them)."""
    try:
        if path.is_dir() and not path.is_symlink():
            import shutil  # (with bz2 and lzma: only a tree to remove loads it)

            shutil.rmtree(path, onerror=_ignore_missing)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def _ignore_missing(func: object, path: str, exc_info: tuple) -> None:
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


def tree_size(path: Path) -> int:
    """Bytes used by the regular files under `path` (0 when missing)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return 0
    if not path.is_dir() or path.is_symlink():
        return st.st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: Path, data: bytes, tmp_dir: Path, *, durable: bool = True,
                      mode: int = 0o644) -> None:
    """Replace `path` with `data`: readers see the old content or the new, never a mix.

    `durable` also survives a machine crash (fsync of the file and its directory); files that
    are derived or re-checked on use skip it.
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(tmp_dir, path.name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as out:  # made with `mode`: never readable more widely
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def write_json_atomic(path: Path, doc: object, tmp_dir: Path, *, durable: bool = True) -> None:
    write_file_atomic(path, json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n", tmp_dir,
                      durable=durable)
