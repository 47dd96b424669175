"""What a container looks like from outside: state, Docker's inspect document, the list,
logs and stats. Read-only: safe from any process at any time."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from pytest_isobox.engine import ContainerState, ContainerStats, LogStream, NetworkInfo
from pytest_isobox.native.reader import container_state
from pytest_isobox.native.specs import spec_from_dict
from pytest_isobox.native.state import ContainerDir
from pytest_isobox.processes import ProcessIdentity


class ViewsRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    def _state_of(self, cdir: ContainerDir, state: dict, brief: bool = False) -> ContainerState:
        """The container's state; `brief` (what an event names) reads no cgroup, no
        liveness and no health: the state file's status as recorded."""
        status = state["status"]
        if not brief and status == "running" and not self._monitor_alive(state):
            # the monitor records the exit before it ends: `state` may have been read just
            # before it did (a container that exited at once then looked dead, exit code 0)
            state = self._read_state(cdir)
            status = "dead" if state["status"] == "running" else state["status"]
        if not brief:
            state = self._usage_of(cdir, state)
        config = cdir.config
        if not brief and status == "running" and self._frozen(cdir.id):
            status = "paused"  # read from the freezer: pause writes no state
        return container_state(cdir.id, cdir.name, config, state, status,
                               None if brief else _health(cdir))

    def state(self, container: str) -> ContainerState:
        cdir = self._find(container)
        handle = self._monitors.get(cdir.id)
        if handle is not None:  # an ended monitor collected (no zombie); the handle and its
            handle.reap()  # events stay for wait(), which another thread may be in (--sig-proxy)
        return self._state_of(cdir, self._read_state(cdir))

    def _brief_state(self, container: str) -> ContainerState:
        """`state` as an event names it (see `_state_of`): a few file reads, no more."""
        cdir = self._find(container)
        return self._state_of(cdir, self._read_state(cdir), brief=True)

    def inspect(self, container: str, *, size: bool = False) -> dict:
        """Docker's container JSON, for the fields this engine knows; `size` adds SizeRw and
        SizeRootFs (`inspect -s`), which walk the container's writable layer."""
        from pytest_isobox.native import keeper
        from pytest_isobox.native.container_json import container_json  # (datetime: only here)

        cdir = self._find(container)
        st = self.state(cdir.id)
        raw = {**self._usage_of(cdir, self._read_state(cdir)), **keeper.read(cdir.path)}
        data = container_json(cdir.id, cdir.config, raw, st, cdir=cdir.path,
                              networks=self._networks_of(st),
                              size=self._sizes(cdir) if size else None)
        data["Isobox"] = {  # ours, not Docker's: rootless mode, the limits held, the id map
            "Rootless": self._rootless is not None,
            "Limits": self._limits_plan(spec_from_dict(cdir.config["spec"]))[1],
            "IdMapping": self._rootless.note if self._rootless else "",
            "Outbound": getattr(self._rootless, "outbound_note", "") if self._rootless else "",
        }
        return data

    def _networks_of(self, st: ContainerState) -> dict[str, NetworkInfo]:
        networks = {}
        for name in st.ips:
            with contextlib.suppress(Exception):  # the network went meanwhile
                networks[name] = self.network_inspect(name)
        return networks

    def _sizes(self, cdir: ContainerDir) -> dict[str, int]:
        rw = _tree_size(cdir.path / "upper")
        try:
            image = self.images_store.resolve(cdir.config["image_id"]).size
        except Exception:  # noqa: BLE001 - the image was removed under a stopped container
            image = 0
        return {"rw": rw, "root_fs": rw + image}

    def top(self, container: str, ps_args: str = "-ef") -> dict:
        """Docker's `top` document ({Titles, Processes}): the host's `ps` (with `ps_args`)
        cut down to the container's processes, the ones in its cgroup."""
        import shlex
        import subprocess

        from pytest_isobox.engine import ContainerError

        cdir = self._find(container)
        st = self.state(cdir.id)
        if st.status not in ("running", "paused"):
            raise ContainerError(f"container {cdir.id[:12]} is not running")
        pids = set(self._cgroup(cdir.id).procs()) or ({st.pid} if st.pid else set())
        try:
            args = shlex.split(ps_args)
        except ValueError as exc:
            raise ContainerError(f"top: bad ps options {ps_args!r}: {exc}") from None
        done = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["failed"])[-1]
            raise ContainerError(f"top: ps {ps_args}: {last}")
        lines = done.stdout.splitlines()
        titles = lines[0].split() if lines else []
        if "PID" not in titles:
            raise ContainerError(f"top: ps {ps_args} gives no PID column")
        where = titles.index("PID")
        rows = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > where and fields[where].isdigit() and int(fields[where]) in pids:
                rows.append(fields)
        return {"Titles": titles, "Processes": rows}

    def system_info(self) -> dict:
        """Docker's `/info` document: counts of this home's containers and images."""
        from pytest_isobox._version import __version__
        from pytest_isobox.engine import documents

        security = ["name=seccomp,profile=builtin"] + (["name=rootless"] if self._rootless
                                                       else [])
        return documents.system_info(self.containers(all=True), images=len(self.images()),
                                     server_version=f"isobox {__version__} (native)",
                                     root_dir=str(self.home), security=security)

    def version_document(self) -> dict:
        from pytest_isobox._version import __version__
        from pytest_isobox.engine import documents

        return documents.server_version("isobox native engine (daemonless)", __version__)

    def containers(self, *, all: bool = False) -> list[ContainerState]:
        found = []
        for cdir in self.store.all():
            with contextlib.suppress(Exception):  # removed meanwhile
                st = self._state_of(cdir, self._read_state(cdir))
                if all or st.status in ("running", "paused"):  # Docker lists paused ones
                    found.append(st)
        return sorted(found, key=lambda s: s.created_at or 0, reverse=True)

    def logs(self, container: str, *, stdout: bool = True, stderr: bool = True,
             follow: bool = False, tail: int | None = None) -> Iterator[tuple[LogStream, bytes]]:
        for stream, _, data in self.log_records(container, stdout=stdout, stderr=stderr,
                                                follow=follow, tail=tail, lines=False):
            yield stream, data

    def log_records(self, container: str, *, stdout: bool = True, stderr: bool = True,
                    follow: bool = False, tail: int | None = None, since: float | None = None,
                    until: float | None = None, lines: bool = True,
                    ) -> Iterator[tuple[LogStream, float, bytes]]:
        """(stream, time, bytes): a line each (`lines`), written from `since` to `until`
        (Unix times), as `docker logs -t --since --until` shows them."""
        for stream, when, data in self._log_pieces(container, stdout, stderr, follow, tail):
            if since is not None and when < since:
                continue
            if until is not None and when > until:
                if follow:
                    return
                continue
            if lines:
                for line in data.splitlines(keepends=True):
                    yield stream, when, line
            else:
                yield stream, when, data

    def _log_pieces(self, container: str, stdout: bool, stderr: bool, follow: bool,
                    tail: int | None) -> Iterator[tuple[LogStream, float, bytes]]:
        from pytest_isobox.native.logs import read_log_timed

        cdir = self._find(container)
        monitor_fd = None
        if follow:
            monitor = ProcessIdentity.load(cdir.read_state().get("monitor"))
            if monitor is not None:
                with contextlib.suppress(ProcessLookupError):
                    monitor_fd = os.pidfd_open(monitor.pid)
                if monitor_fd is not None and not monitor.alive():
                    os.close(monitor_fd)
                    monitor_fd = None
        try:
            yield from read_log_timed(cdir.log, stdout=stdout, stderr=stderr, follow=follow,
                                      tail=tail, monitor_fd=monitor_fd)
        finally:
            if monitor_fd is not None:
                os.close(monitor_fd)

    def stats(self, container: str) -> ContainerStats:
        cdir = self._find(container)
        state = self._read_state(cdir)
        if state["status"] == "running" and self._monitor_alive(state):
            cgroup = self._cgroup(cdir.id)
            s = cgroup.stats()
            read, written = _block_io(getattr(cgroup, "procs", list)())
            return ContainerStats(s.memory_current, s.memory_peak, s.cpu_time_ns, s.pids,
                                  read, written)
        return ContainerStats(0, int(state.get("memory_peak") or 0),
                              int(state.get("cpu_time_ns") or 0), 0)



def _block_io(pids) -> tuple[int, int]:
    """Bytes the container's processes had read from and written to the storage layer
    (/proc/PID/io, which holds the children each has reaped too): Docker's BlockIO, counted
    per process because this engine keeps no blkio cgroup."""
    read = written = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):  # ended meanwhile
            with open(f"/proc/{pid}/io") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            read += int(fields.get("read_bytes", 0))
            written += max(int(fields.get("write_bytes", 0))
                           - int(fields.get("cancelled_write_bytes", 0)), 0)
    return read, written


def _tree_size(root: os.PathLike | str) -> int:
    """Bytes of the regular files under `root` (as Docker's SizeRw counts the upper layer)."""
    total = 0
    for top, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(top, name))
                total += st.st_size
    return total


def _health(cdir: ContainerDir) -> str | None:
    """The keeper's healthcheck status (keeper.json, written by the keeper alone)."""
    from pytest_isobox.native import keeper

    health = keeper.read(cdir.path).get("health")
    return health.get("Status") if isinstance(health, dict) else None
