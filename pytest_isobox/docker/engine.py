"""`DockerEngine`: the Engine protocol over a Docker daemon's REST API.

Everything the native engine does, done by dockerd: the same specs give the same containers
(Docker's own defaults where ours defer to them), the same states and the same errors.
Guarantees: every container, network and volume we create carries our ownership labels; a
new engine first sweeps the containers and networks that dead owners on this host left
behind (`swept` lists them), and `close()` removes this engine's non-persistent containers.
Objects without our labels are never touched. A failed create or run leaves no container.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import os
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pytest_isobox.docker import attach
from pytest_isobox.docker.build import BuildProgress, context_tar
from pytest_isobox.docker.client import DockerClient, HijackedStream, iter_json_stream
from pytest_isobox.docker.containers import (
    AUTO_REMOVE_LABEL,
    attachments,
    create_body,
    docker_removes,
    state_from_inspect,
)
from pytest_isobox.docker.ownership import (
    OWNER_LABEL,
    PERSISTENT_LABEL,
    SESSION_LABEL,
    Owner,
    is_orphan,
    ownership_labels,
)
from pytest_isobox.docker.streams import demultiplex, read_output
from pytest_isobox.engine import (
    BuildError,
    BuildStep,
    ConflictError,
    ContainerError,
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    ExecResult,
    ImageInfo,
    ImageNotFound,
    IsoboxError,
    LogStream,
    NetworkInfo,
)

log = logging.getLogger(__name__)

_OWNER_FILTER = json.dumps({"label": [OWNER_LABEL]})


class DockerEngine:
    """Containers, images, networks and volumes of one Docker daemon.

    `base_url` is `unix:///path/docker.sock` or `tcp://host:port`; by default DOCKER_HOST,
    else the local socket. A daemon that does not answer raises EngineUnavailable at once.
    """

    name = "docker"

    def __init__(self, base_url: str | None = None) -> None:
        self.client = DockerClient(base_url)
        self.owner = Owner.current()
        self.session = uuid.uuid4().hex
        self._exit_waiters: dict[str, _ExitWaiter] = {}
        self.swept: list[str] = self.sweep()

    def close(self) -> None:
        """Remove the non-persistent containers this engine made (they die with their owner,
        as with the native engine); networks and volumes stay until removed or swept."""
        for waiter in set(self._exit_waiters.values()):
            waiter.close()
        self._exit_waiters.clear()
        try:
            mine = self.client.get_json("/containers/json", {
                "all": True, "filters": json.dumps({"label": [f"{SESSION_LABEL}={self.session}"]}),
            }) or []
            for doc in mine:  # type: ignore[union-attr]
                if (doc.get("Labels") or {}).get(PERSISTENT_LABEL) != "1":
                    self._forget("container", f"/containers/{doc['Id']}",
                                 {"force": True, "v": True})
        except (IsoboxError, OSError) as exc:  # the daemon went away: the next sweep cleans
            log.info("isobox: could not remove this session's containers: %s", exc)
        self.client.close()

    def _labels(self, persistent: bool = False) -> dict[str, str]:
        return ownership_labels(self.owner, self.session, persistent=persistent)

    # ------------------------------------------------------------------ sweep

    def sweep(self) -> list[str]:
        """Remove the containers and networks of dead owners; returns what went.

        Named volumes are labelled but never swept: they hold data a user named, and the
        native engine keeps them too until `volume_remove`.
        """
        swept: list[str] = []
        query = {"all": True, "filters": _OWNER_FILTER}
        for doc in self.client.get_json("/containers/json", query):  # type: ignore[union-attr]
            if is_orphan(doc.get("Labels")):
                name = (doc.get("Names") or ["/" + doc["Id"][:12]])[0].lstrip("/")
                if self._forget("container", f"/containers/{doc['Id']}",
                                {"force": True, "v": True}):
                    swept.append(f"container {name}")
        for doc in self.client.get_json("/networks", {"filters": _OWNER_FILTER}) or []:  # type: ignore[union-attr]
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

    # ------------------------------------------------------------------ images

    def build(
        self,
        context: str | Path,
        *,
        dockerfile: str | None = None,
        tag: str | None = None,
        buildargs: dict[str, str] | None = None,
        target: str | None = None,
        no_cache: bool = False,
        network: str | None = None,
        on_step: Callable[[BuildStep], None] | None = None,
    ) -> str:
        """Build with the daemon's builder from a context tar we made (ignored files left out)."""
        body, size, dockerfile_name = context_tar(Path(context), dockerfile)
        query = {
            "dockerfile": dockerfile_name, "t": tag, "buildargs": buildargs or None,
            "target": target, "nocache": no_cache or None, "networkmode": network,
            "rm": True, "forcerm": True,
        }
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
        progress = BuildProgress(dockerfile or "Dockerfile", on_step, self._full_image_id)
        try:
            with body, self.client.stream("POST", "/build", query, body, headers=headers,
                                          kind="build") as resp:
                for message in iter_json_stream(resp):
                    progress.feed(message)
        except BuildError as exc:  # refused before any step: a Dockerfile or option error
            raise BuildError(f"{dockerfile or 'Dockerfile'}: {exc}") from None
        return progress.result()

    def _full_image_id(self, short_id: str) -> str:
        try:
            return self.image_inspect(short_id).id
        except ImageNotFound:
            return short_id

    def import_rootfs(self, source: str | Path, ref: str) -> str:
        """Import a rootfs directory or tar as a one-layer image tagged `ref`; returns its id."""
        path = Path(source)
        if not path.exists():
            raise ImageNotFound(f"import: no such file or directory: {path}")
        repo, tag = split_ref(ref)
        query = {"fromSrc": "-", "repo": repo, "tag": tag}
        with _tar_of(path) as (body, size):
            headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
            with self.client.stream("POST", "/images/create", query, body, headers=headers,
                                    kind="image") as resp:
                messages = list(iter_json_stream(resp))
        for message in messages:
            if "error" in message:
                raise IsoboxError(f"import of {path} failed: {message['error']}")
        return self.image_inspect(ref).id

    def image_inspect(self, ref: str) -> ImageInfo:
        doc = self.client.get_json(f"/images/{ref}/json", kind="image")
        return _image_info(doc)  # type: ignore[arg-type]

    def images(self) -> list[ImageInfo]:
        infos = []
        for summary in self.client.get_json("/images/json") or []:  # type: ignore[union-attr]
            try:
                infos.append(self.image_inspect(summary["Id"]))
            except ImageNotFound:  # removed meanwhile
                continue
        return infos

    def tag(self, ref: str, new_ref: str) -> None:
        repo, tag = split_ref(new_ref)
        self.client.request("POST", f"/images/{ref}/tag", {"repo": repo, "tag": tag},
                            kind="image")

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        self.client.request("DELETE", f"/images/{ref}", {"force": force}, kind="image")

    def save_images(self, refs: list[str], path: str | Path) -> None:
        """Write `docker save` archive of `refs` to `path` atomically (temp file, rename)."""
        target = Path(path)
        for ref in refs:
            self.image_inspect(ref)  # a clear ImageNotFound before anything is written
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as out, self.client.stream(
                    "GET", "/images/get", [("names", r) for r in refs], kind="image") as resp:
                while chunk := resp.read1(1 << 20):
                    out.write(chunk)
            os.replace(temp, target)
        except BaseException:
            os.unlink(temp)
            raise

    def load_images(self, path: str | Path) -> list[str]:
        """Load a `docker save` archive; returns the loaded tags (or ids for untagged images)."""
        source = Path(path)
        headers = {"Content-Type": "application/x-tar",
                   "Content-Length": str(source.stat().st_size)}
        loaded = []
        with source.open("rb") as body, self.client.stream(
                "POST", "/images/load", {"quiet": True}, body, headers=headers,
                kind="image") as resp:
            for message in iter_json_stream(resp):
                if "error" in message:
                    raise IsoboxError(f"load of {source} failed: {message['error']}")
                text = message.get("stream", "")
                for prefix in ("Loaded image: ", "Loaded image ID: "):
                    if text.startswith(prefix):
                        loaded.append(text[len(prefix):].strip())
        return loaded

    def commit(self, container: str, *, config: dict | None = None, created_by: str = "") -> str:
        """Commit the container's changes as an image; `config` overrides its config fields."""
        doc = self.client.post_json("/commit", {"container": container,
                                                "comment": created_by or None},
                                    config or {}, kind="container")
        return doc["Id"]  # type: ignore[index]

    def derive_image(
        self, base: str | None, *, config: dict, created_by: str, author: str | None = None,
    ) -> str:
        """A new image: base's layers (none for scratch) under a new runtime config.

        With a base, a never-started container whose config already is `config` is committed
        (Docker records an empty layer); from scratch, a layerless image archive is loaded.
        Docker writes the container's command as the history's created_by, so `created_by`
        goes into the history's comment.
        """
        if base is None:
            return self._load_layerless(config, created_by, author)
        body = {**config, "Image": base, "Labels": {**(config.get("Labels") or {})}}
        doc = self.client.post_json("/containers/create", body=body, kind="container")
        container_id = doc["Id"]  # type: ignore[index]
        try:
            base_author = self.client.get_json(f"/images/{base}/json", kind="image").get("Author")  # type: ignore[union-attr]
            commit = self.client.post_json("/commit", {
                "container": container_id, "comment": created_by,
                "author": base_author if author is None else author,
            }, config, kind="container")
        finally:
            self._forget("container", f"/containers/{container_id}", {"force": True})
        return commit["Id"]  # type: ignore[index]

    def _load_layerless(self, config: dict, created_by: str, author: str | None) -> str:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        document = json.dumps({
            "architecture": "amd64", "os": "linux", "author": author or "", "created": now,
            "config": config, "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created": now, "created_by": created_by, "empty_layer": True}],
        }).encode()
        config_name = hashlib.sha256(document).hexdigest() + ".json"
        manifest = json.dumps([{"Config": config_name, "RepoTags": None, "Layers": []}]).encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for name, data in ((config_name, document), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        doc = self.client.request("POST", "/images/load", {"quiet": True}, archive.getvalue(),
                                  headers={"Content-Type": "application/x-tar"}, kind="image")
        for message in iter_json_stream(io.BytesIO(doc)):
            if "error" in message:
                raise IsoboxError(f"creating a scratch image failed: {message['error']}")
        return "sha256:" + config_name.removesuffix(".json")

    def prune(self) -> int:
        """Remove images no tag or container needs (`docker image prune`: dangling images of
        the whole daemon, ours or not, since Docker labels no image's maker); returns bytes."""
        doc = self.client.post_json("/images/prune",
                                    {"filters": json.dumps({"dangling": ["true"]})})
        return int((doc or {}).get("SpaceReclaimed") or 0)  # type: ignore[union-attr]

    def disk_usage(self) -> dict[str, dict[str, int]]:
        doc: dict = self.client.get_json("/system/df")  # type: ignore[assignment]
        images = doc.get("Images") or []
        containers = doc.get("Containers") or []
        volumes = doc.get("Volumes") or []
        cache = doc.get("BuildCache") or []
        return {
            "Images": {"count": len(images), "size": int(doc.get("LayersSize") or 0)},
            "Containers": {"count": len(containers),
                           "size": sum(c.get("SizeRw") or 0 for c in containers)},
            "Volumes": {"count": len(volumes),
                        "size": sum(max((v.get("UsageData") or {}).get("Size", 0), 0)
                                    for v in volumes)},
            "Build Cache": {"count": len(cache), "size": sum(c.get("Size") or 0 for c in cache)},
        }

    # ------------------------------------------------------------------ containers

    def create(self, spec: ContainerSpec) -> ContainerState:
        """Create (not start) a container; extra named networks are connected before returning."""
        body = create_body(spec, self._labels(spec.persistent))
        doc = self.client.post_json("/containers/create", {"name": spec.name}, body,
                                    kind="container")
        container_id = doc["Id"]  # type: ignore[index]
        try:
            for extra in attachments(spec)[1:]:
                self.client.request("POST", f"/networks/{extra.network}/connect", body={
                    "Container": container_id,
                    "EndpointConfig": {"Aliases": list(extra.aliases)},
                }, kind="network")
            return self.state(container_id)
        except BaseException:
            self._forget("container", f"/containers/{container_id}", {"force": True, "v": True})
            raise

    def start(self, container: str) -> ContainerState:
        """Start a created container.

        For a container Docker removes on exit (persistent auto_remove), the exit is waited for
        before it starts, so `wait` still gives its exit code after Docker removed it.
        """
        doc = self.inspect(container)
        state = state_from_inspect(doc)
        if (doc.get("HostConfig") or {}).get("AutoRemove") and state.id not in self._exit_waiters:
            waiter = self._exit_waiter(state.id, "removed")
            for key in (state.id, state.name):
                self._exit_waiters[key] = waiter
        try:
            self.client.request("POST", f"/containers/{state.id}/start", kind="container")
        except BaseException:
            waiter = self._drop_exit_waiter(state.id)
            if waiter is not None:
                waiter.close()
            raise
        try:
            return self.state(state.id)
        except ContainerNotFound:  # auto_remove and already done
            return state

    def run(self, spec: ContainerSpec) -> ContainerState:
        """Create and start; a container that fails to start is removed again."""
        state = self.create(spec)
        try:
            return self.start(state.id)
        except BaseException:
            self._forget("container", f"/containers/{state.id}", {"force": True, "v": True})
            raise

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

    def state(self, container: str) -> ContainerState:
        return state_from_inspect(self.inspect(container))

    def inspect(self, container: str) -> dict:
        return self.client.get_json(f"/containers/{container}/json",
                                    kind="container")  # type: ignore[return-value]

    def containers(self, *, all: bool = False) -> list[ContainerState]:
        states = []
        for summary in self.client.get_json("/containers/json", {"all": all}) or []:  # type: ignore[union-attr]
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

    def _log_pieces(self, container: str, query: dict,
                    tty: bool) -> Iterator[tuple[LogStream, bytes]]:
        with self.client.stream("GET", f"/containers/{container}/logs", query,
                                kind="container") as resp:
            yield from read_output(resp, tty=tty)

    def exec(
        self, container: str, cmd: list[str], *, env: dict[str, str] | None = None,
        user: str | None = None, workdir: str | None = None,
    ) -> ExecResult:
        exec_id = self._exec_create(container, cmd, env=env, user=user, workdir=workdir,
                                    tty=False, stdin=False)
        out: dict[LogStream, list[bytes]] = {"stdout": [], "stderr": []}
        with self.client.stream("POST", f"/exec/{exec_id}/start",
                                body={"Detach": False, "Tty": False}, kind="exec") as resp:
            for name, payload in demultiplex(resp):
                out[name].append(payload)
        return ExecResult(self._exec_exit_code(exec_id), b"".join(out["stdout"]),
                          b"".join(out["stderr"]))

    def _exec_create(self, container: str, cmd: list[str], *, env: dict[str, str] | None,
                     user: str | None, workdir: str | None, tty: bool, stdin: bool) -> str:
        body = {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True,
                "AttachStdin": stdin, "Tty": tty,
                "Env": [f"{k}={v}" for k, v in (env or {}).items()]}
        if user is not None:
            body["User"] = user
        if workdir is not None:
            body["WorkingDir"] = workdir
        doc = self.client.post_json(f"/containers/{container}/exec", body=body, kind="container")
        return doc["Id"]  # type: ignore[index]

    def _exec_exit_code(self, exec_id: str) -> int:
        doc: dict = self.client.get_json(f"/exec/{exec_id}/json", kind="exec")  # type: ignore[assignment]
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
            if "No such container:path" in str(exc) or "Could not find the file" in str(exc):
                raise ContainerError(f"no such file or directory in {container}: {path}") from None
            raise

    def stats(self, container: str) -> ContainerStats:
        doc: dict = self.client.get_json(f"/containers/{container}/stats",  # type: ignore[assignment]
                                         {"stream": False, "one-shot": True}, kind="container")
        memory = doc.get("memory_stats") or {}
        usage = int(memory.get("usage") or 0)
        return ContainerStats(
            memory_current=usage,
            memory_peak=int(memory.get("max_usage") or usage),  # cgroup v2 keeps no peak here
            cpu_time_ns=int(((doc.get("cpu_stats") or {}).get("cpu_usage") or {})
                            .get("total_usage") or 0),
            pids=int((doc.get("pids_stats") or {}).get("current") or 0),
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
    ) -> int:
        """`docker exec [-i] [-t]`: our terminal wired to the process; returns its exit code."""
        exec_id = self._exec_create(container, cmd, env=env, user=user, workdir=workdir,
                                    tty=tty, stdin=stdin)
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

        with attach.raw_terminal(0, tty and stdin), attach.on_resize(resize, enabled=tty):
            if tty:
                resize()
            attach.pump(stream, tty=tty, stdin=stdin)

    # ------------------------------------------------------------------ networks

    def network_create(
        self, name: str, *, subnet: str | None = None, labels: dict[str, str] | None = None,
    ) -> NetworkInfo:
        """A bridge network; persistent when `labels` holds `io.isobox.persistent=1`."""
        body: dict = {"Name": name, "Driver": "bridge", "CheckDuplicate": True,
                      "Labels": {**(labels or {}), **self._labels()}}
        if subnet:
            body["IPAM"] = {"Driver": "default", "Config": [{"Subnet": subnet}]}
        self.client.post_json("/networks/create", body=body, kind="network")
        return self.network_inspect(name)

    def network_remove(self, name: str) -> None:
        self.client.request("DELETE", f"/networks/{name}", kind="network")

    def network_inspect(self, name: str) -> NetworkInfo:
        doc: dict = self.client.get_json(f"/networks/{name}", kind="network")  # type: ignore[assignment]
        config = ((doc.get("IPAM") or {}).get("Config") or [{}])[0]
        return NetworkInfo(
            name=doc["Name"], id=doc["Id"], driver=doc.get("Driver", ""),
            subnet=config.get("Subnet"), gateway=config.get("Gateway"),
            containers={cid: (c.get("IPv4Address") or "").split("/")[0]
                        for cid, c in (doc.get("Containers") or {}).items()},
            labels=dict(doc.get("Labels") or {}),
        )

    def networks(self) -> list[NetworkInfo]:
        infos = []
        for summary in self.client.get_json("/networks") or []:  # type: ignore[union-attr]
            try:
                infos.append(self.network_inspect(summary["Id"]))
            except IsoboxError:  # removed meanwhile
                continue
        return infos

    # ------------------------------------------------------------------ volumes

    def volume_create(self, name: str, *, labels: dict[str, str] | None = None) -> str:
        """A named local volume; persistent when `labels` holds `io.isobox.persistent=1`."""
        doc = self.client.post_json("/volumes/create", body={
            "Name": name, "Driver": "local", "Labels": {**(labels or {}), **self._labels()},
        }, kind="volume")
        return doc["Name"]  # type: ignore[index]

    def volume_remove(self, name: str, *, force: bool = False) -> None:
        self.client.request("DELETE", f"/volumes/{name}", {"force": force}, kind="volume")

    def volumes(self) -> list[str]:
        doc = self.client.get_json("/volumes") or {}
        return sorted(v["Name"] for v in doc.get("Volumes") or [])  # type: ignore[union-attr]


# --------------------------------------------------------------------------- helpers

def split_ref(ref: str) -> tuple[str, str]:
    """`name[:tag]` to (name, tag), tag defaulting to latest; a registry port is not a tag."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return name, tag


def cmd_text(exec_doc: dict) -> str:
    config = exec_doc.get("ProcessConfig") or {}
    return " ".join([config.get("entrypoint", ""), *(config.get("arguments") or [])]).strip()


_OCI_RUNTIME_CONFIG = frozenset({
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
    "StopSignal", "ArgsEscaped", "Healthcheck", "OnBuild", "Shell",
})


def _image_info(doc: dict) -> ImageInfo:
    """Docker's image inspect as our ImageInfo; `config` is shaped as an OCI image config."""
    rootfs = doc.get("RootFS") or {}
    config = {
        "architecture": doc.get("Architecture", ""),
        "os": doc.get("Os", ""),
        "created": doc.get("Created"),
        "author": doc.get("Author", ""),
        "config": {k: v for k, v in (doc.get("Config") or {}).items()
                   if k in _OCI_RUNTIME_CONFIG and v not in (None, "")},
        "rootfs": {"type": "layers", "diff_ids": list(rootfs.get("Layers") or [])},
    }
    return ImageInfo(id=doc["Id"], tags=list(doc.get("RepoTags") or []), config=config,
                     size=int(doc.get("Size") or 0), created=doc.get("Created"))


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


class _tar_of:
    """A tar file to upload: the file itself, or a temporary tar of a directory's contents."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def __enter__(self) -> tuple[IO[bytes], int]:
        if self.path.is_dir():
            spool = tempfile.TemporaryFile()
            with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for entry in sorted(os.listdir(self.path)):
                    tar.add(self.path / entry, arcname=entry)
            self._file = spool
        else:
            self._file = self.path.open("rb")
        size = self._file.seek(0, io.SEEK_END)
        self._file.seek(0)
        return self._file, size

    def __exit__(self, *exc: object) -> None:
        assert self._file is not None
        self._file.close()
