"""`DockerEngine`: the Engine protocol over a Docker daemon's REST API.

Everything the native engine does, done by dockerd: the same specs give the same containers
(Docker's own defaults where ours defer to them), the same states and the same errors.
Guarantees: every container, network and volume we create carries our ownership labels; a
new engine first sweeps the containers and networks that dead owners on this host left
behind (`swept` lists them), and `close()` removes this engine's non-persistent containers.
Objects without our labels are never touched. A failed create or run leaves no container.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import IO, Self

from pytest_isobox.docker import attach
from pytest_isobox.docker.client import DockerClient, HijackedStream
from pytest_isobox.docker.containers import (
    AUTO_REMOVE_LABEL,
    attachments,
    create_body,
    docker_removes,
    state_from_inspect,
)
from pytest_isobox.docker.images import ImageMethods
from pytest_isobox.docker.networks import NetworkMethods
from pytest_isobox.docker.ownership import (
    OWNER_LABEL,
    PERSISTENT_LABEL,
    SESSION_LABEL,
    Owner,
    is_orphan,
    ownership_labels,
)
from pytest_isobox.docker.streams import demultiplex, read_output
from pytest_isobox.docker.watchdog import remove_owned
from pytest_isobox.dockerargs import check_platform, exposed_ports
from pytest_isobox.engine import (
    ConflictError,
    ContainerError,
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineEvent,
    ExecResult,
    IsoboxError,
    LogStream,
    ProcessStream,
    RestartPolicy,
)
from pytest_isobox.engine.protocol import OPTIONAL_CAPABILITIES
from pytest_isobox.reaper import RunReaper

log = logging.getLogger(__name__)

_OWNER_FILTER = json.dumps({"label": [OWNER_LABEL]})


_UNSET = object()  # update(): a value not given

class DockerEngine(ImageMethods, NetworkMethods):
    """Containers, images, networks and volumes of one Docker daemon.

    `base_url` is `unix:///path/docker.sock`, `tcp://host:port` or `ssh://user@host`; by
    default found as Docker's CLI finds it (address.py: DOCKER_HOST, TLS variables, contexts,
    the local or rootless socket). For a remote daemon `remote_host` is its host: published
    ports bind there and states give that address. A daemon that does not answer raises EngineUnavailable at once.
    `pull` is the pull policy (default $ISOBOX_PULL, else "missing"; see images.py).
    """

    name = "docker"
    # no "keep": a daemon's labels are fixed at create, so a foreground run's container is
    # persistent from the start there (and outlives a killed CLI, as with docker run)
    capabilities = OPTIONAL_CAPABILITIES - {"keep"}
    # One stats sample costs the daemon 0.5-1 s (it waits for a CPU delta even one-shot):
    # the plugin does not take one at teardown, which stays one forced removal.
    cheap_stats = False

    def __init__(self, base_url: str | None = None, *, pull: str | None = None,
                 read_only: bool = False) -> None:
        """`read_only`: this process only looks (ps, inspect, logs): no sweep at open, no
        session cleanup at close (it made nothing)."""
        from pytest_isobox.images.registry.policy import PullPolicy

        self.pull_policy = PullPolicy(pull)  # before the daemon is asked: a bad value is ours
        self.client = DockerClient(base_url)
        self.remote_host: str | None = self.client.address.remote_host
        self._publish_ip = _publish_ip(self.remote_host)
        self.owner = Owner.current()
        self.session = uuid.uuid4().hex
        self.labels = ownership_labels(self.owner, self.session)
        self._exit_waiters: dict[str, _ExitWaiter] = {}
        address, label = self.client.address, self.owner.label
        self._watchdog = RunReaper(self.owner.process, lambda _: remove_owned(address, label),
                                   name="watchdog")  # see watchdog.py
        self._removals: ThreadPoolExecutor | None = None
        self._removing: list[Future] = []
        self._removals_lock = threading.Lock()
        self.read_only = read_only
        self.swept: list[str] = [] if read_only else self.sweep()

    def close(self) -> None:
        """Remove the non-persistent containers this engine made (they die with their owner,
        as with the native engine); networks and volumes stay until removed or swept."""
        for waiter in set(self._exit_waiters.values()):
            waiter.close()
        self._exit_waiters.clear()
        with self._removals_lock:
            removals, self._removals = self._removals, None
        if removals is not None:
            removals.shutdown(wait=True)  # every removal asked for is done before we return
        if self.read_only:
            self.client.close()
            return
        try:
            mine = self.client.get_json("/containers/json", {
                "all": True, "filters": json.dumps({"label": [f"{SESSION_LABEL}={self.session}"]}),
            }) or []
            for doc in mine:
                if (doc.get("Labels") or {}).get(PERSISTENT_LABEL) != "1":
                    self._forget("container", f"/containers/{doc['Id']}",
                                 {"force": True, "v": True})
        except (IsoboxError, OSError) as exc:  # the daemon went away: the next sweep cleans
            log.info("isobox: could not remove this session's containers: %s", exc)
        self.client.close()
        self._watchdog.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sweep

    def sweep(self) -> list[str]:
        """Remove the containers and networks of dead owners; returns what went.

        Named volumes are labelled but never swept: they hold data a user named, and the
        native engine keeps them too until `volume_remove`.
        """
        swept: list[str] = []
        query = {"all": True, "filters": _OWNER_FILTER}
        for doc in self.client.get_json("/containers/json", query):
            if is_orphan(doc.get("Labels")):
                name = (doc.get("Names") or ["/" + doc["Id"][:12]])[0].lstrip("/")
                if self._forget("container", f"/containers/{doc['Id']}",
                                {"force": True, "v": True}):
                    swept.append(f"container {name}")
        for doc in self.client.get_json("/networks", {"filters": _OWNER_FILTER}) or []:
            if is_orphan(doc.get("Labels")) and self._forget("network", f"/networks/{doc['Id']}"):
                swept.append(f"network {doc['Name']}")
        for item in swept:
            log.info("isobox: removed %s left by a dead owner", item)
        return swept

    def _forget(self, kind: str, path: str, query: dict | None = None) -> bool:
        """Delete one leftover; one still in use by a live run or already gone is skipped."""
        try:
            self.client.request("DELETE", path, query, kind=kind)
        except IsoboxError as exc:
            log.info("isobox: kept %s: %s", path, exc)
            return False
        return True

    # ------------------------------------------------------------------ containers

    def create(self, spec: ContainerSpec) -> ContainerState:
        """Create (not start) a container; extra named networks are connected before returning."""
        container_id = self._create(spec)
        try:
            return self.state(container_id)
        except BaseException:
            self._forget("container", f"/containers/{container_id}", {"force": True, "v": True})
            raise

    def _create(self, spec: ContainerSpec) -> str:
        """POST /containers/create (and a connect per extra network); the new container's id.
        With -P, the image's EXPOSE is read first: each port is bound on loopback by us."""
        if not spec.persistent:
            self._watchdog.ensure()
        params = {"name": spec.name, "platform": check_platform(spec.platform)}

        def create() -> dict:
            exposed = None
            if spec.publish_all:
                image = self.client.get_json(f"/images/{spec.image}/json", kind="image")
                exposed = exposed_ports(image.get("Config") or {}, ())
            body = create_body(spec, ownership_labels(self.owner, self.session,
                                                     persistent=spec.persistent),
                               self._publish_ip, exposed)
            return self.client.post_json("/containers/create", params, body, kind="container")

        doc = self._with_image(spec.image, create)
        container_id = doc["Id"]
        try:
            for extra in attachments(spec)[1:]:
                self.client.request("POST", f"/networks/{extra.network}/connect", body={
                    "Container": container_id,
                    "EndpointConfig": {"Aliases": list(extra.aliases)},
                }, kind="network")
        except BaseException:
            self._forget("container", f"/containers/{container_id}", {"force": True, "v": True})
            raise
        return container_id

    def start(self, container: str) -> ContainerState:
        """Start a created container.

        For a container Docker removes on exit (persistent auto_remove), the exit is waited for
        before it starts, so `wait` still gives its exit code after Docker removed it.
        """
        doc = self.inspect(container)
        state = state_from_inspect(doc, self.remote_host)
        return self._start(state.id, state.name,
                           bool((doc.get("HostConfig") or {}).get("AutoRemove")), state)

    def run(self, spec: ContainerSpec) -> ContainerState:
        """Create and start (three requests: create, start, inspect); a container that fails
        to start is removed again."""
        removes = docker_removes(spec)
        # one Docker removes at exit may be gone once started: its created state stands in
        before = self.create(spec) if removes else None
        container_id = before.id if before else self._create(spec)
        try:
            return self._start(container_id, spec.name, removes, before)
        except BaseException:
            self._forget("container", f"/containers/{container_id}", {"force": True, "v": True})
            raise

    def _start(self, container_id: str, name: str | None, docker_removes_it: bool,
               before: ContainerState | None = None) -> ContainerState:
        if docker_removes_it and container_id not in self._exit_waiters:
            waiter = self._exit_waiter(container_id, "removed")
            for key in (container_id, name):
                if key:
                    self._exit_waiters[key] = waiter
        try:
            self.client.request("POST", f"/containers/{container_id}/start", kind="container")
        except BaseException:
            waiter = self._drop_exit_waiter(container_id)
            if waiter is not None:
                waiter.close()
            raise
        try:
            return self.state(container_id)
        except ContainerNotFound:  # removed by Docker already (auto_remove, exited at once)
            if before is None:
                raise
            return before

    def _exit_waiter(self, container_id: str, condition: str) -> _ExitWaiter:
        """A wait registered with the daemon now (it answers headers once it is registered)."""
        conn, resp = self.client.open_stream("POST", f"/containers/{container_id}/wait",
                                             {"condition": condition}, kind="container")
        return _ExitWaiter(container_id, conn, resp)

    def _drop_exit_waiter(self, container: str) -> _ExitWaiter | None:
        waiter = self._exit_waiters.pop(container, None)
        if waiter is not None:
            for key in [k for k, w in self._exit_waiters.items() if w is waiter]:
                del self._exit_waiters[key]
        return waiter

    def wait(self, container: str, timeout: float | None = None) -> int:
        """The exit code once the container is not running; TimeoutError names it if it runs on.

        A non-persistent auto_remove container is removed once its exit code is known.
        """
        waiter = self._drop_exit_waiter(container)
        if waiter is None:
            waiter = self._exit_waiter(container, "not-running")
        try:
            code = waiter.exit_code(timeout)
        except TimeoutError:
            raise TimeoutError(
                f"container {container} still running after {timeout:g} s") from None
        finally:
            waiter.close()
        self._remove_if_auto(container)
        return code

    def _remove_if_auto(self, container: str) -> None:
        try:
            if self.state(container).labels.get(AUTO_REMOVE_LABEL) == "1":
                self.remove(container, force=True)
        except ContainerNotFound:  # removed already (by Docker, or another waiter)
            pass

    def stop(self, container: str, timeout: float | None = None) -> None:
        query = {"t": None if timeout is None else int(timeout)}
        grace = (timeout if timeout is not None else self._stop_timeout(container)) + 30
        self.client.request("POST", f"/containers/{container}/stop", query, kind="container",
                            timeout=max(grace, self.client.timeout))

    def _stop_timeout(self, container: str) -> float:
        config = self.inspect(container).get("Config") or {}
        return float(config.get("StopTimeout") or 10)

    def kill(self, container: str, signal: str = "SIGKILL") -> None:
        self.client.request("POST", f"/containers/{container}/kill", {"signal": signal},
                            kind="container")

    def keep(self, container: str) -> None:
        """Not this engine's ("keep" is not among its capabilities): a daemon's labels are
        fixed at create, so a container that must outlive its owner is made persistent."""
        from pytest_isobox.engine import require

        require(self, "keep", "make a container persistent after its creation")

    def remove(self, container: str, *, force: bool = False) -> None:
        """Remove the container and its anonymous volumes (named volumes stay).

        A removal already under way (auto_remove) is waited for rather than reported.
        """
        try:
            self.client.request("DELETE", f"/containers/{container}",
                                {"force": force, "v": True}, kind="container")
        except ConflictError as exc:
            if "already in progress" not in str(exc):
                raise
            try:
                self.client.request("POST", f"/containers/{container}/wait",
                                    {"condition": "removed"}, kind="container")
            except ContainerNotFound:
                pass

    def remove_later(self, container: str) -> None:
        """Force-remove a container without waiting for the daemon (a test's teardown: the
        next test's container starts meanwhile); `close()` waits until every such removal
        is done. Only for a container nothing looks up again by name; a failure is logged
        and left to the sweep."""
        with self._removals_lock:
            if self._removals is None:
                self._removals = ThreadPoolExecutor(max_workers=2,
                                                    thread_name_prefix="isobox-remove")
            self._removing = [f for f in self._removing if not f.done()]
            self._removing.append(self._removals.submit(
                self._forget, "container", f"/containers/{container}", {"force": True, "v": True}))

    def settle_removals(self) -> None:
        """Wait for the removals `remove_later` started (a network or volume they used can
        go only then)."""
        with self._removals_lock:
            pending, self._removing = self._removing, []
        wait_futures(pending)

    def state(self, container: str) -> ContainerState:
        return state_from_inspect(self.inspect(container), self.remote_host)

    def pause(self, container: str) -> None:
        self.client.request("POST", f"/containers/{container}/pause", kind="container")

    def unpause(self, container: str) -> None:
        self.client.request("POST", f"/containers/{container}/unpause", kind="container")

    def rename(self, container: str, new_name: str) -> None:
        self.client.request("POST", f"/containers/{container}/rename", {"name": new_name},
                            kind="container")

    def top(self, container: str, ps_args: str = "-ef") -> dict:
        return self.client.get_json(f"/containers/{container}/top", {"ps_args": ps_args},
                                    kind="container")

    def system_info(self) -> dict:
        """The daemon's own `/info` document."""
        return self.client.get_json("/info")

    def version_document(self) -> dict:
        """The daemon's own `/version` document."""
        return self.client.get_json("/version")

    def inspect(self, container: str, *, size: bool = False) -> dict:
        return self.client.get_json(f"/containers/{container}/json",
                                    {"size": True} if size else None, kind="container")

    def containers(self, *, all: bool = False) -> list[ContainerState]:
        states = []
        for summary in self.client.get_json("/containers/json", {"all": all}) or []:
            try:
                states.append(self.state(summary["Id"]))
            except ContainerNotFound:  # removed meanwhile
                continue
        return states

    def logs(
        self, container: str, *, stdout: bool = True, stderr: bool = True,
        follow: bool = False, tail: int | None = None,
    ) -> Iterator[tuple[LogStream, bytes]]:
        """(stream, bytes) pieces in the order written; with `follow`, until the container ends."""
        tty = bool((self.inspect(container).get("Config") or {}).get("Tty"))
        query = {"stdout": stdout, "stderr": stderr, "follow": follow,
                 "tail": "all" if tail is None else tail}
        return self._log_pieces(container, query, tty)

    def log_records(self, container: str, *, stdout: bool = True, stderr: bool = True,
                    follow: bool = False, tail: int | None = None, since: float | None = None,
                    until: float | None = None, lines: bool = True,
                    ) -> Iterator[tuple[LogStream, float, bytes]]:
        """(stream, time, line) from the daemon's timestamped log, `since`..`until`."""
        from pytest_isobox.engine.documents import parse_time

        tty = bool((self.inspect(container).get("Config") or {}).get("Tty"))
        query: dict = {"stdout": stdout, "stderr": stderr, "follow": follow, "timestamps": True,
                       "tail": "all" if tail is None else tail}
        if since is not None:
            query["since"] = f"{since:.9f}"
        if until is not None:
            query["until"] = f"{until:.9f}"
        for stream, data in self._log_pieces(container, query, tty):
            for line in data.splitlines(keepends=True):
                stamp, _, rest = line.partition(b" ")
                text = stamp.decode("ascii", "replace")
                yield stream, LogTime(parse_time(text) or 0.0, text), rest

    def events(self, *, since: float | None = None, until: float | None = None,
               follow: bool = True) -> Iterator[EngineEvent | None]:
        """The daemon's events (its own history: dockerd keeps the last ones in memory)."""
        from pytest_isobox.docker.events import daemon_events

        return daemon_events(self.client, since=since, until=until, follow=follow)

    def _log_pieces(self, container: str, query: dict,
                    tty: bool) -> Iterator[tuple[LogStream, bytes]]:
        with self.client.stream("GET", f"/containers/{container}/logs", query,
                                kind="container") as resp:
            yield from read_output(resp, tty=tty)

    def exec(
        self, container: str, cmd: list[str], *, env: dict[str, str] | None = None,
        user: str | None = None, workdir: str | None = None, privileged: bool = False,
    ) -> ExecResult:
        exec_id = self._exec_create(container, cmd, env=env, user=user, workdir=workdir,
                                    tty=False, stdin=False, privileged=privileged)
        out: dict[LogStream, list[bytes]] = {"stdout": [], "stderr": []}
        with self.client.stream("POST", f"/exec/{exec_id}/start",
                                body={"Detach": False, "Tty": False}, kind="exec") as resp:
            for name, payload in demultiplex(resp):
                out[name].append(payload)
        return ExecResult(self._exec_exit_code(exec_id), b"".join(out["stdout"]),
                          b"".join(out["stderr"]))

    def exec_detached(self, container: str, cmd: list[str], *, env: dict[str, str] | None = None,
                      user: str | None = None, workdir: str | None = None,
                      privileged: bool = False) -> ExecResult:
        """`exec -d`: started by the daemon, not waited for; a command that cannot start is
        126 (127 when not found) with the daemon's reason on stderr."""
        exec_id = self._exec_create(container, cmd, env=env, user=user, workdir=workdir,
                                    tty=False, stdin=False, privileged=privileged)
        try:
            self.client.request("POST", f"/exec/{exec_id}/start",
                                body={"Detach": True, "Tty": False}, kind="exec")
        except ContainerNotFound:
            raise
        except IsoboxError as exc:
            code = 127 if "not found" in str(exc) else 126
            return ExecResult(code, b"", f"{exc}\n".encode())
        return ExecResult(0, b"", b"")

    def exec_stream(self, container: str, cmd: list[str], *, tty: bool = False,
                    stdin: bool = False, env: dict[str, str] | None = None,
                    user: str | None = None, workdir: str | None = None) -> ProcessStream:
        """The daemon's hijacked exec start, as pipes (docker/stdio.py)."""
        from pytest_isobox.docker.stdio import relay

        exec_id = self._exec_create(container, cmd, env=env, user=user, workdir=workdir,
                                    tty=tty, stdin=stdin)
        hijacked = self.client.hijack(f"/exec/{exec_id}/start",
                                      body={"Detach": False, "Tty": tty}, kind="exec")

        def resize(rows: int, columns: int) -> None:
            with contextlib.suppress(IsoboxError):
                self.client.request("POST", f"/exec/{exec_id}/resize",
                                    {"h": rows, "w": columns}, kind="exec")
        return relay(hijacked, tty=tty, stdin=stdin, output=True,
                     exit_code=lambda: self._exec_exit_code(exec_id),
                     resize=resize if tty else None)

    def start_stream(self, container: str, *, stdin: bool = True,
                     output: bool = False) -> ProcessStream:
        """Attached (stdin, and the output when asked) before the start, as `docker start
        -ai` does, so nothing written at once is missed."""
        from pytest_isobox.docker.stdio import relay

        state = self.state(container)
        tty = bool((self.inspect(state.id).get("Config") or {}).get("Tty"))
        query = {"stream": 1, "stdin": int(stdin), "stdout": int(output),
                 "stderr": int(output)}
        hijacked = self.client.hijack(f"/containers/{state.id}/attach", query,
                                      kind="container")
        try:
            self.start(state.id)
        except BaseException:
            hijacked.close()
            raise
        return relay(hijacked, tty=tty, stdin=stdin, output=output,
                     exit_code=lambda: self.wait(state.id))

    def update(self, container: str, *, mem_limit: int | None | object = _UNSET,
               cpus: float | None | object = _UNSET, cpu_shares: int | None | object = _UNSET,
               pids_limit: int | None | object = _UNSET,
               restart: RestartPolicy | None | object = _UNSET) -> None:
        """`docker update`: only the values given change (None: unlimited)."""
        body: dict = {}
        if mem_limit is not _UNSET:
            body["Memory"] = body["MemorySwap"] = mem_limit or 0
        if cpus is not _UNSET:
            body["NanoCpus"] = int(float(cpus) * 1e9) if cpus else 0  # type: ignore[arg-type]
        if cpu_shares is not _UNSET:
            body["CpuShares"] = cpu_shares or 0
        if pids_limit is not _UNSET:
            body["PidsLimit"] = pids_limit or -1
        if restart is not _UNSET:
            policy = restart or RestartPolicy("no")
            body["RestartPolicy"] = {"Name": policy.name,  # type: ignore[attr-defined]
                                     "MaximumRetryCount": policy.maximum_retry}  # type: ignore[attr-defined]
        self.client.post_json(f"/containers/{container}/update", body=body, kind="container")

    def resize(self, container: str, rows: int, columns: int) -> None:
        self.client.request("POST", f"/containers/{container}/resize",
                            {"h": rows, "w": columns}, kind="container")

    def _exec_create(self, container: str, cmd: list[str], *, env: dict[str, str] | None,
                     user: str | None, workdir: str | None, tty: bool, stdin: bool,
                     privileged: bool = False) -> str:
        body = {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True,
                "AttachStdin": stdin, "Tty": tty, "Privileged": privileged,
                "Env": [f"{k}={v}" for k, v in (env or {}).items()]}
        if user is not None:
            body["User"] = user
        if workdir is not None:
            body["WorkingDir"] = workdir
        doc = self.client.post_json(f"/containers/{container}/exec", body=body, kind="container")
        return doc["Id"]

    def _exec_exit_code(self, exec_id: str) -> int:
        doc: dict = self.client.get_json(f"/exec/{exec_id}/json", kind="exec")
        if doc.get("ExitCode") is None:
            raise ContainerError(f"exec {cmd_text(doc)} gave no exit code")
        return int(doc["ExitCode"])

    def put_archive(self, container: str, path: str, data: bytes | IO[bytes]) -> None:
        """Extract a tar into `path` (an existing directory) in the container."""
        if not isinstance(data, bytes):
            data = data.read()
        self._archive_request("PUT", container, path, data)

    def get_archive(self, container: str, path: str) -> bytes:
        """A tar of `path` (file or directory) in the container."""
        return self._archive_request("GET", container, path, None)

    def _archive_request(self, method: str, container: str, path: str,
                         data: bytes | None) -> bytes:
        try:
            return self.client.request(
                method, f"/containers/{container}/archive", {"path": path}, data,
                headers={"Content-Type": "application/x-tar"} if data is not None else None,
                kind="container")
        except ContainerNotFound as exc:
            text = str(exc)
            if "No such container:path" in text or "Could not find the file" in text or \
                    "no such container" not in text.lower():  # Podman: "no such file or ..."
                raise ContainerError(f"no such file or directory in {container}: {path}") from None
            raise

    def stats(self, container: str) -> ContainerStats:
        doc: dict = self.client.get_json(f"/containers/{container}/stats",
                                         {"stream": False, "one-shot": True}, kind="container")
        memory = doc.get("memory_stats") or {}
        usage = int(memory.get("usage") or 0)
        return ContainerStats(
            memory_current=usage,
            memory_peak=int(memory.get("max_usage") or usage),  # cgroup v2 keeps no peak here
            cpu_time_ns=int(((doc.get("cpu_stats") or {}).get("cpu_usage") or {})
                            .get("total_usage") or 0),
            pids=int((doc.get("pids_stats") or {}).get("current") or 0),
            **_block_io(doc.get("blkio_stats") or {}),
        )

    def run_attached(self, spec: ContainerSpec) -> int:
        """`docker run [-i] [-t]`: our terminal wired to the container until it exits.

        The exit status is the container's; with auto_remove the container is gone afterwards.
        """
        state = self.create(spec)
        try:
            stream = self.client.hijack(f"/containers/{state.id}/attach", {
                "stream": True, "stdin": spec.stdin_open, "stdout": True, "stderr": True,
            }, kind="container")
            try:
                waiter = self._exit_waiter(state.id,
                                           "removed" if docker_removes(spec) else "next-exit")
                try:
                    self.client.request("POST", f"/containers/{state.id}/start",
                                        kind="container")
                    self._attach_terminal(stream, f"/containers/{state.id}/resize",
                                          tty=spec.tty, stdin=spec.stdin_open)
                    code = waiter.exit_code(None)
                finally:
                    waiter.close()
            finally:
                stream.close()
            self._remove_if_auto(state.id)
            return code
        except BaseException:
            if not spec.persistent:
                self._forget("container", f"/containers/{state.id}", {"force": True, "v": True})
            raise

    def exec_attached(
        self, container: str, cmd: list[str], *, tty: bool, stdin: bool,
        env: dict[str, str] | None = None, user: str | None = None, workdir: str | None = None,
        privileged: bool = False,
    ) -> int:
        """`docker exec [-i] [-t]`: our terminal wired to the process; returns its exit code."""
        exec_id = self._exec_create(container, cmd, env=env, user=user, workdir=workdir,
                                    tty=tty, stdin=stdin, privileged=privileged)
        stream = self.client.hijack(f"/exec/{exec_id}/start", body={"Detach": False, "Tty": tty},
                                    kind="exec")
        try:
            self._attach_terminal(stream, f"/exec/{exec_id}/resize", tty=tty, stdin=stdin)
        finally:
            stream.close()
        return self._exec_exit_code(exec_id)

    def _attach_terminal(self, stream: HijackedStream, resize_path: str, *, tty: bool,
                         stdin: bool) -> None:
        """Our stdin/stdout/stderr on the stream; with a tty, raw mode and size kept in step."""
        def resize() -> None:
            size = attach.terminal_size(1)
            if size is not None:
                try:
                    self.client.request("POST", resize_path, {"h": size[0], "w": size[1]})
                except IsoboxError:  # the process already ended: nothing to resize
                    pass

        with attach.raw_terminal(0, tty and stdin), attach.resize_events(tty) as resized:
            if tty:
                resize()
            attach.pump(stream, tty=tty, stdin=stdin, resize_fd=resized, on_resize=resize)

# --------------------------------------------------------------------------- helpers

def _publish_ip(remote_host: str | None) -> str | None:
    """Where a remote daemon publishes ports: the address we reach it at when that is an IP
    (so nothing else of it is exposed), else every address; None for a local daemon."""
    if remote_host is None:
        return None
    try:
        ipaddress.ip_address(remote_host)
    except ValueError:
        return "0.0.0.0"
    return remote_host


def cmd_text(exec_doc: dict) -> str:
    config = exec_doc.get("ProcessConfig") or {}
    return " ".join([config.get("entrypoint", ""), *(config.get("arguments") or [])]).strip()


class _ExitWaiter:
    """The daemon's answer to one wait request, read when the caller asks for the exit code."""

    def __init__(self, container_id: str, conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse) -> None:
        self.container_id = container_id
        self._conn = conn
        self._resp = resp

    def exit_code(self, timeout: float | None) -> int:
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        doc = json.loads(self._resp.read())
        error = doc.get("Error")
        if error and error.get("Message"):
            raise ContainerError(f"waiting for {self.container_id}: {error['Message']}")
        return int(doc["StatusCode"])

    def close(self) -> None:
        self._conn.close()


def _block_io(blkio: dict) -> dict[str, int]:
    """Docker CLI's BlockIO from the daemon's blkio_stats: the Read and Write entries (v1
    spells them so, v2 in lower case)."""
    totals = {"read": 0, "write": 0}
    for entry in blkio.get("io_service_bytes_recursive") or ():
        op = str(entry.get("op", "")).lower()
        if op in totals:
            totals[op] += int(entry.get("value") or 0)
    return {"block_read": totals["read"], "block_write": totals["write"]}


class LogTime(float):
    """A log line's time in Unix seconds that keeps the daemon's own RFC 3339 text (its
    nanoseconds, which a float cannot hold), for `logs -t` to print as `docker logs -t`."""

    rfc3339: str

    def __new__(cls, seconds: float, text: str) -> Self:
        value = super().__new__(cls, seconds)
        value.rfc3339 = text
        return value
