"""On-disk state of containers: one directory per container under `<home>/containers/`.

Layout of `containers/<id>/`: config.json (written once at create), state.json (rewritten
atomically by whoever runs the container: the creating engine, then its monitor), upper/ and
work/ (the overlay's writable half), rootfs/ (the mount point, used only inside the
container's own mount namespace), hosts, hostname, resolv.conf, log.

Guarantees: a container directory appears complete or not at all (built under `.tmp-*`, then
renamed) and disappears at once (renamed into `.trash/`, where it is deleted afterwards, in
the background in the process that enabled it: unlinking is slow on a disk mounted with
`discard`); names are unique per home (`.names/<name>` links, created exclusively); every
container records its owner as pid *and* start time, so `sweep` can tell a dead owner from a
reused pid and never touches a live process's containers.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pytest_isobox.engine import ConflictError, ContainerNotFound
from pytest_isobox.processes import ProcessIdentity


def remove_tree(path: Path | str) -> None:
    """Delete a directory tree, what of it can be (shutil, with its bz2 and lzma, loaded
    only by a process that deletes one)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- state transitions
# A container's state.json changes only through these, whoever runs it (the engine starting
# through the shim, the Python monitor, the engine folding in the shim's exit record).

def mark_running(state: dict, pid: int, monitor: ProcessIdentity | None, **extra: object
                 ) -> dict:
    """created/exited -> running: its PID 1 (with start time) and monitor, a fresh start."""
    child = ProcessIdentity.of(pid)
    state.update(status="running", pid=pid, pid_start=child.start if child else 0,
                 monitor=monitor.dump() if monitor else None, started_at=time.time(),
                 exit_code=0, oom_killed=False, finished_at=None, error="", **extra)
    return state


def mark_addresses(state: dict, ips: dict[str, str], *, unpublished: bool = False) -> dict:
    """A running container's addresses per network after `network connect`/`disconnect`
    (its status is untouched); `unpublished`: it left the network its ports led to."""
    state["ips"] = dict(ips)
    if unpublished:
        state["ports"] = {}
    return state


def mark_start_failed(state: dict, exit_code: int, message: str) -> dict:
    """The start failed before exec: still created, with Docker's exit code and the reason."""
    state.update(status="created", exit_code=exit_code, error=message)
    return state


def mark_exited(state: dict, exit_code: int, finished_at: float, **usage: object) -> dict:
    """running -> exited, with the exit code and whatever final usage is known."""
    state.update(status="exited", exit_code=exit_code, finished_at=finished_at, **usage)
    return state


def write_json_atomic(path: Path, data: dict) -> None:
    """Replace `path` with `data` so readers see the old or the new document, never a mix."""
    write_file_atomic(path, json.dumps(data).encode())


def write_file_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` by a rename, for readers in other processes.

    The blocks are allocated before the write: ext4 flushes a delay-allocated file that is
    renamed over an existing one (auto_da_alloc), which costs milliseconds per state change
    on a small VM. A process killed at any point leaves the old or the new file."""
    tmp = f"{path.parent}/.{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        if data:
            with contextlib.suppress(OSError):  # a filesystem without fallocate
                os.posix_fallocate(fd, 0, len(data))
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class ContainerDir:
    """The paths and documents of one container's state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.name
        self.upper = path / "upper"
        self.work = path / "work"
        self.rootfs = path / "rootfs"
        self.log = path / "log"
        self.hosts = path / "hosts"
        self.hostname = path / "hostname"
        self.resolv_conf = path / "resolv.conf"
        self._config: dict | None = None

    @property
    def config(self) -> dict:
        if self._config is None:
            try:
                self._config = json.loads((self.path / "config.json").read_text())
            except FileNotFoundError:
                raise ContainerNotFound(f"no such container: {self.id}") from None
        return self._config

    @property
    def name(self) -> str:
        """The container's name: config.json's, or the one `rename` gave it since (the `name`
        file, replaced atomically: config.json is written once)."""
        try:
            return (self.path / "name").read_text()
        except FileNotFoundError:
            return self.config["name"]

    @property
    def owner(self) -> dict | None:
        """The process the container dies with (config.json's), or None: persistent from the
        start, or kept since (the `kept` file: config.json is written once)."""
        return None if (self.path / "kept").exists() else self.config.get("owner")

    def keep(self) -> None:
        """From now on the container outlives its owner (see Engine.keep)."""
        write_file_atomic(self.path / "kept", b"")

    def read_state(self) -> dict:
        try:
            return json.loads((self.path / "state.json").read_text())
        except FileNotFoundError:
            raise ContainerNotFound(f"no such container: {self.id}") from None

    def write_state(self, state: dict) -> None:
        write_json_atomic(self.path / "state.json", state)

    def read_exit(self) -> tuple[int, float] | None:
        """(wait status, finished_at) as the shim recorded them in `exit`, None until then."""
        try:
            status, finished = (self.path / "exit").read_text().split()
        except (FileNotFoundError, ValueError):
            return None
        return int(status), float(finished)

    def exists(self) -> bool:
        return (self.path / "config.json").exists()


class ContainerStore:
    """Every container of one home: create atomically, find by id, prefix or name, delete."""

    def __init__(self, home: Path) -> None:
        self.root = home / "containers"
        self.names = self.root / ".names"
        self.names.mkdir(parents=True, exist_ok=True)
        self.trash = self.root / ".trash"
        self.trash.mkdir(exist_ok=True)
        self._known: dict[str, ContainerDir] = {}  # config.json never changes: read it once
        self._deleter: BackgroundDeleter | None = None

    def create(self, cid: str, name: str, config: dict, state: dict,
               populate: Callable[[ContainerDir], None]) -> ContainerDir:
        """Make `containers/<cid>` with its documents and files, then claim `name` for it."""
        me = ProcessIdentity.current()
        tmp = ContainerDir(self.root / f".tmp-{me.pid}-{me.start}-{cid}")
        tmp.path.mkdir()
        try:
            for sub in (tmp.upper, tmp.work, tmp.rootfs):
                sub.mkdir()
            # nobody sees the directory before the rename: plain writes are atomic enough
            (tmp.path / "config.json").write_text(json.dumps(config))
            (tmp.path / "state.json").write_text(json.dumps(state))
            populate(tmp)
            os.rename(tmp.path, self.root / cid)
        except BaseException:
            remove_tree(tmp.path)
            raise
        cdir = ContainerDir(self.root / cid)
        try:
            self._claim_name(name, cid)
        except BaseException:
            remove_tree(cdir.path)
            raise
        return cdir

    def _claim_name(self, name: str, cid: str) -> None:
        link = self.names / name
        try:
            os.symlink(cid, link)
            return
        except FileExistsError:
            pass
        holder = self._name_target(name)
        if holder is not None:
            raise ConflictError(
                f'the container name "/{name}" is already in use by container "{holder}"')
        stale = self.names / f".{name}.{os.getpid()}.tmp"  # holder gone: take over the name
        stale.unlink(missing_ok=True)
        os.symlink(cid, stale)
        os.replace(stale, link)

    def rename(self, cdir: ContainerDir, new: str) -> None:
        """Give the container the name `new` (unique in the home, claimed exclusively first),
        then release its old one."""
        old = cdir.name
        if new == old:
            raise ConflictError(f'renaming a container to its own name "{new}"')
        self._claim_name(new, cdir.id)
        try:
            write_file_atomic(cdir.path / "name", new.encode())
        except BaseException:
            (self.names / new).unlink(missing_ok=True)
            raise
        if self._link_points_to(old, cdir.id):
            (self.names / old).unlink(missing_ok=True)

    def _name_target(self, name: str) -> str | None:
        try:
            cid = os.readlink(self.names / name)
        except (FileNotFoundError, OSError):
            return None
        return cid if (self.root / cid / "config.json").exists() else None

    def find(self, ref: str) -> ContainerDir:
        """A container by full id, name, or unique id prefix."""
        if ref and "/" not in ref and not ref.startswith("."):
            cdir = self._known.get(ref) or ContainerDir(self.root / ref)
            if cdir.exists():
                self._known[ref] = cdir
                return cdir
            self._known.pop(ref, None)
            by_name = self._name_target(ref.lstrip("/"))
            if by_name:
                return ContainerDir(self.root / by_name)
            if len(ref) >= 1:
                matches = [c for c in self.ids() if c.startswith(ref)]
                if len(matches) == 1:
                    return ContainerDir(self.root / matches[0])
                if len(matches) > 1:
                    raise ContainerNotFound(f"container reference {ref!r} is ambiguous")
        raise ContainerNotFound(f"no such container: {ref}")

    def ids(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.root) if not n.startswith(".")]
        except FileNotFoundError:
            return []

    def all(self) -> Iterator[ContainerDir]:
        for cid in self.ids():
            cdir = ContainerDir(self.root / cid)
            if cdir.exists():
                yield cdir

    def delete_in_background(self) -> None:
        """From now on, this process deletes removed directories in a thread (see `drain`)."""
        if self._deleter is None or not self._deleter.ours():
            self._deleter = BackgroundDeleter()

    def drain(self) -> None:
        """Wait until every directory this process removed is deleted."""
        if self._deleter is not None and self._deleter.ours():
            self._deleter.drain()

    def delete(self, cdir: ContainerDir) -> None:
        """Remove the directory and its name link; idempotent. The directory is gone from
        the store when this returns; its files are deleted now, or soon by the background
        deleter (a crash leaves them in `.trash/` for the sweep)."""
        name = None
        try:
            name = cdir.name
        except ContainerNotFound:
            pass
        if name and self._link_points_to(name, cdir.id):
            (self.names / name).unlink(missing_ok=True)
        me = ProcessIdentity.current()
        doomed = self.trash / f"{me.pid}-{me.start}-{cdir.id}"
        try:
            os.rename(cdir.path, doomed)
        except FileNotFoundError:
            return
        except OSError:  # e.g. a leftover of the same name: delete in place
            doomed = cdir.path
        self._known.pop(cdir.id, None)
        if self._deleter is not None and self._deleter.ours():
            self._deleter.put(doomed)
        else:
            remove_tree(doomed)

    def leftover_trash(self) -> Iterator[Path]:
        """`.trash/<pid>-<start>-<id>` dirs whose deleting process is gone."""
        yield from _of_dead_processes(self.trash, "")

    def _link_points_to(self, name: str, cid: str) -> bool:
        try:
            return os.readlink(self.names / name) == cid
        except OSError:
            return False

    def leftover_temp_dirs(self, only: ProcessIdentity | None = None) -> Iterator[Path]:
        """`.tmp-<pid>-<start>-<id>` dirs whose creating process is gone (`only`: that one)."""
        mine = "" if only is None else f".tmp-{only.pid}-{only.start}-"
        for path in _of_dead_processes(self.root, ".tmp-"):
            if path.name.startswith(mine):
                yield path

    def stale_names(self) -> Iterator[Path]:
        for entry in os.listdir(self.names):
            if not entry.startswith(".") and self._name_target(entry) is None:
                yield self.names / entry


def _of_dead_processes(directory: Path, prefix: str) -> Iterator[Path]:
    """Entries `<prefix><pid>-<start>-...` of `directory` whose process is gone."""
    for entry in os.listdir(directory):
        if not entry.startswith(prefix):
            continue
        parts = entry[len(prefix):].split("-")
        try:
            creator = ProcessIdentity(int(parts[0]), int(parts[1]))
        except (IndexError, ValueError):
            continue
        if not creator.alive():
            yield directory / entry


class BackgroundDeleter:
    """One daemon thread that deletes directory trees handed to it, off the caller's path.

    Only the process that made it uses it (a forked child deletes synchronously)."""

    def __init__(self) -> None:
        import queue  # (a read-only verb deletes nothing)

        self._pid = os.getpid()
        self._queue: queue.Queue[Path] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="isobox-deleter", daemon=True)
        self._thread.start()

    def ours(self) -> bool:
        return os.getpid() == self._pid

    def put(self, path: Path) -> None:
        self._queue.put(path)

    def drain(self) -> None:
        self._queue.join()

    def _run(self) -> None:
        while True:
            path = self._queue.get()
            try:
                remove_tree(path)
            finally:
                self._queue.task_done()
