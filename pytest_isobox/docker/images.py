"""Images of a Docker daemon: builds, pulls, pushes, imports, archives, commits, tags (part of
DockerEngine).

Builds run in the daemon's builder on a context tar we make (ignored files never leave the
host); `ImageInfo.config` is shaped as an OCI image config, as the native store keeps it.
Pulls and pushes go through the daemon (registries.py gives it the credentials); the pull
policy is the native engine's (images/registry/policy): images a container or a FROM line
names are pulled when missing, once per engine with "always", never with "never" or
ISOBOX_OFFLINE=1. A create whose image is present costs no request more than without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TypeVar

from pytest_isobox.docker import build_choice, registries
from pytest_isobox.docker.build import BuildProgress, context_tar
from pytest_isobox.docker.buildkit import BuildKitProgress
from pytest_isobox.docker.client import DockerClient, iter_json_stream
from pytest_isobox.engine import (
    BuildError,
    BuildStep,
    EngineUnavailable,
    ImageInfo,
    ImageNotFound,
    IsoboxError,
)
from pytest_isobox.images.reference import parse_reference
from pytest_isobox.images.registry import credentials
from pytest_isobox.images.registry.policy import PullPolicy

_T = TypeVar("_T")


class ImageMethods:
    """The image half of the Engine protocol; mixed into DockerEngine, which sets `client`."""

    client: DockerClient
    pull_policy: PullPolicy

    # ------------------------------------------------------------------ registries

    def pull(self, ref: str, progress: registries.Progress | None = None, *,
             platform: str | None = None) -> str:
        """Pull `ref` through the daemon now (whatever the policy); returns the image id."""
        parsed = parse_reference(ref)
        query = registries.pull_query(parsed)
        if platform:
            query["platform"] = platform
        auth = registries.registry_auth(parsed.domain)
        headers = {"X-Registry-Auth": auth} if auth else {}
        reader = registries.DaemonProgress(progress or self.pull_policy.progress)
        try:
            with self.client.stream("POST", "/images/create", query,
                                    headers=headers, kind="image", timeout=None) as resp:
                for message in iter_json_stream(resp):
                    reader.feed(message)
        except EngineUnavailable:
            raise
        except IsoboxError as exc:  # refused before the stream began
            reader.error = str(exc)
        if reader.error is not None:
            raise registries.registry_error("pull", parsed, reader.error,
                                            sent_credentials=auth is not None,
                                            daemon=self.client.base_url)
        self.pull_policy.pulled(ref)
        return self.image_inspect(ref).id

    def push(self, ref: str, progress: registries.Progress | None = None, *,
             chunk_size: int | None = None) -> str:
        """Push the image tagged `ref` through the daemon; returns the manifest digest."""
        if chunk_size is not None:
            raise IsoboxError("push --chunk-size: not supported by the docker engine (the "
                              "daemon chooses how it uploads)")
        parsed = parse_reference(ref)
        name, tag = registries.push_target(parsed)
        self.image_inspect(f"{name}:{tag}")  # a clear ImageNotFound naming it first
        auth = registries.registry_auth(parsed.domain)
        headers = {"X-Registry-Auth": auth or registries.encode({})}  # the daemon wants one
        reader = registries.DaemonProgress(progress)
        try:
            with self.client.stream("POST", f"/images/{name}/push", {"tag": tag},
                                    headers=headers, kind="image", timeout=None) as resp:
                for message in iter_json_stream(resp):
                    reader.feed(message)
        except EngineUnavailable:
            raise
        except IsoboxError as exc:
            reader.error = str(exc)
        if reader.error is None and reader.digest is None:
            reader.error = "the daemon reported no digest"
        if reader.error is not None:
            raise registries.registry_error("push", parsed, reader.error,
                                            sent_credentials=auth is not None,
                                            daemon=self.client.base_url)
        return str(reader.digest)

    def ensure_image(self, ref: str) -> str:
        """The image id for `ref`, pulled first as the pull policy says (see the module)."""
        return self.pull_policy.ensure(ref, _DaemonImages(self), self.pull)

    def _with_image(self, ref: str, action: Callable[[], _T]) -> _T:
        """`action()` (a create), the image pulled as the policy says: before it when "always"
        wants a fresh copy, else only when the daemon answers that the image is missing."""
        if self.pull_policy.due(ref):
            self.ensure_image(ref)
        try:
            return action()
        except ImageNotFound:
            self.pull_policy.ensure(ref, _Missing(), self.pull)  # raises if it may not pull
        return action()

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
        labels: dict[str, str] | None = None, pull: bool = False,
        on_output: Callable[[BuildStep, str], None] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> str:
        """Build with the builder build_choice picks (the daemon's classic builder or BuildKit
        on a context tar we made, ignored files left out; else natively, then loaded);
        `on_note` hears which and why first, `on_output` RUN output as it comes."""
        root = Path(context)
        choice = self._choose_builder(root, dockerfile)
        if on_note is not None:
            on_note(choice.note())
        if choice.builder == "native":
            return self._build_natively(root, dockerfile=dockerfile, tag=tag,
                                        buildargs=buildargs, target=target, no_cache=no_cache,
                                        network=network, on_step=on_step, labels=labels,
                                        on_output=on_output)
        body, size, dockerfile_name = context_tar(
            root, dockerfile,
            tar_format=tarfile.GNU_FORMAT if choice.builder == "buildkit" else tarfile.PAX_FORMAT)
        try:
            config = self._from_images(root, dockerfile)
        except BaseException:
            body.close()
            raise
        query = {
            "dockerfile": dockerfile_name, "t": tag, "buildargs": buildargs or None,
            "target": target, "nocache": no_cache or None, "networkmode": network,
            "rm": True, "forcerm": True, "labels": labels or None, "pull": pull or None,
        }
        name = dockerfile or "Dockerfile"
        progress: BuildProgress | BuildKitProgress
        if choice.builder == "buildkit":
            query["version"] = "2"
            progress = BuildKitProgress(name, on_step, on_output)
        else:
            progress = BuildProgress(name, on_step, self._full_image_id, on_output)
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
        if config:
            headers["X-Registry-Config"] = config
        try:
            with body, self.client.stream("POST", "/build", query, body, headers=headers,
                                          kind="build") as resp:
                for message in iter_json_stream(resp):
                    progress.feed(message)
        except BuildError as exc:  # refused before any step: a Dockerfile or option error
            raise BuildError(f"{name}: {exc}") from None
        return progress.result()

    def _choose_builder(self, context: Path, dockerfile: str | None) -> build_choice.Choice:
        path = Path(dockerfile) if dockerfile and os.path.isabs(dockerfile) \
            else context / (dockerfile or "Dockerfile")
        try:
            needs = build_choice.buildkit_features(path.read_text(), path.name)
        except (OSError, UnicodeDecodeError):  # context_tar names the missing Dockerfile
            needs = []
        return build_choice.choose(self._daemon_builders(), needs, os.environ)

    def _daemon_builders(self) -> build_choice.DaemonBuilders:
        """What the daemon's build API offers: one `/_ping` per engine, at its first build."""
        known = getattr(self, "_builders", None)
        if known is None:
            with self.client.stream("GET", "/_ping") as resp:
                default = resp.headers.get("Builder-Version", "") or ""
                resp.read()
            info = self.client.version_info
            podman = any("podman" in str(c.get("Name", "")).lower()
                         for c in info.get("Components") or [] if isinstance(c, dict))
            known = build_choice.DaemonBuilders(
                str(info.get("ApiVersion", "")), podman, default.strip(),
                f"{'Podman' if podman else 'Docker'} {self.client.server_version}")
            self._builders = known
        return known

    def _build_natively(self, context: Path, *, dockerfile: str | None,
                        **options: object) -> str:
        """The native engine builds here from the daemon's FROM images; loaded into it."""
        from pytest_isobox.docker.native_build import build_natively

        self._from_images(context, dockerfile)  # present on the daemon, as the policy says
        bases = from_images(context, dockerfile) or []
        return build_natively(self, context, bases, dockerfile=dockerfile,
                              **options)  # type: ignore[arg-type]

    def _from_images(self, context: Path, dockerfile: str | None) -> str | None:
        """Pull the images FROM lines name as the policy says (the daemon then finds them
        present); returns X-Registry-Config for the registries the daemon may still reach."""
        bases = from_images(context, dockerfile)
        if bases is None:  # unreadable here, or FROM ${ARG}: the daemon pulls, as Docker's CLI
            return registries.registry_config(credentials.configured_domains())
        for base in bases:
            try:
                self.ensure_image(base)
            except ImageNotFound as exc:
                raise BuildError(f"{dockerfile or 'Dockerfile'}: FROM {base}: {exc}") from None
            except IsoboxError as exc:
                raise BuildError(f"{dockerfile or 'Dockerfile'}: FROM {base}: {exc}") from None
        return registries.registry_config(registries.domain_of(b) for b in bases)

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
        try:
            return self.image_inspect(ref).id
        except ImageNotFound:  # Podman tags an import `latest` whatever the tag asked
            ids = [str(m["status"]) for m in messages
                   if str(m.get("status", "")).startswith("sha256:")]
            if not ids:
                raise
            self.tag(ids[-1], ref)
            return self.image_inspect(ref).id

    def image_inspect(self, ref: str) -> ImageInfo:
        return _image_info(self.image_document(ref))

    def image_document(self, ref: str) -> dict:
        """The daemon's own image inspect document (`docker image inspect`)."""
        return self.client.get_json(f"/images/{ref}/json", kind="image")

    def image_history(self, ref: str) -> list[dict]:
        return self.client.get_json(f"/images/{ref}/history", kind="image") or []

    def images(self) -> list[ImageInfo]:
        infos = []
        for summary in self.client.get_json("/images/json") or []:
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
        self.settle_removals()  # type: ignore[attr-defined]  # containers of it may be going
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
                        loaded.append(familiar(text[len(prefix):].strip()))
        return loaded

    def commit(self, container: str, *, config: dict | None = None, created_by: str = "",
               remove: bool = False) -> str:
        """Commit the container's changes as an image; `config` overrides its config fields;
        `remove` removes the container afterwards."""
        doc = self.client.post_json("/commit", {"container": container,
                                                "comment": created_by or None},
                                    config or {}, kind="container")
        if remove:
            self.remove(container, force=True)  # type: ignore[attr-defined]
        return doc["Id"]

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
        container_id = doc["Id"]
        try:
            base_author = self.client.get_json(f"/images/{base}/json", kind="image").get("Author")
            commit = self.client.post_json("/commit", {
                "container": container_id, "comment": created_by,
                "author": base_author if author is None else author,
            }, config, kind="container")
        finally:
            with contextlib.suppress(IsoboxError):  # never hide why the commit failed
                self.client.request("DELETE", f"/containers/{container_id}", {"force": True},
                                    kind="container")
        return commit["Id"]

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
        return int((doc or {}).get("SpaceReclaimed") or 0)

    def disk_usage(self) -> dict[str, dict]:
        """The daemon's `/system/df`, with Docker CLI's active counts and reclaimable sizes."""
        doc: dict = self.client.get_json("/system/df")
        images = doc.get("Images") or []
        containers = doc.get("Containers") or []
        volumes = doc.get("Volumes") or []
        cache = doc.get("BuildCache") or []
        layers = int(doc.get("LayersSize") or 0)
        used = [i for i in images if (i.get("Containers") or 0) > 0]
        idle = [c for c in containers if c.get("State") not in ("running", "paused")]

        def refs(v: dict) -> int:
            return (v.get("UsageData") or {}).get("RefCount", 0)

        def vsize(v: dict) -> int:
            return max((v.get("UsageData") or {}).get("Size", 0), 0)

        return {
            "Images": {"count": len(images), "size": layers,
                       "per_image": [{"id": i.get("Id", ""),
                                      "tags": [t for t in i.get("RepoTags") or ()
                                               if t != "<none>:<none>"],
                                      "size": int(i.get("Size") or 0),
                                      "shared_size": max(int(i.get("SharedSize") or 0), 0),
                                      "unique_size": int(i.get("Size") or 0)
                                      - max(int(i.get("SharedSize") or 0), 0)}
                                     for i in images],
                       "active": len(used),
                       "reclaimable": max(layers - sum(
                           int(i.get("Size") or 0) - max(int(i.get("SharedSize") or 0), 0)
                           for i in used), 0)},
            "Containers": {"count": len(containers),
                           "size": sum(c.get("SizeRw") or 0 for c in containers),
                           "active": len(containers) - len(idle),
                           "reclaimable": sum(c.get("SizeRw") or 0 for c in idle)},
            "Volumes": {"count": len(volumes), "size": sum(vsize(v) for v in volumes),
                        "active": sum(1 for v in volumes if refs(v) > 0),
                        "reclaimable": sum(vsize(v) for v in volumes if refs(v) == 0)},
            "Build Cache": {"count": len(cache), "size": sum(c.get("Size") or 0 for c in cache),
                            "active": sum(1 for c in cache if c.get("InUse")),
                            "reclaimable": sum(c.get("Size") or 0 for c in cache
                                               if not c.get("InUse") and not c.get("Shared"))},
        }


class _DaemonImages:
    """The daemon's images as the pull policy looks them up (as it looks up the store)."""

    def __init__(self, engine: ImageMethods) -> None:
        self._engine = engine

    def find(self, ref: str) -> tuple[str, None]:
        return self._engine.image_inspect(ref).id, None


class _Missing:
    """An image the daemon just said it does not have."""

    def find(self, ref: str) -> tuple[str, None]:
        raise ImageNotFound(f"No such image: {ref}")


def from_images(context: Path, dockerfile: str | None) -> list[str] | None:
    """The registry images a Dockerfile's FROM lines name (not stages, not scratch), or None
    when that cannot be known before the build (a FROM with a variable, a file we cannot
    parse: the daemon then reports it)."""
    from pytest_isobox.builder.dockerfile import parse
    from pytest_isobox.builder.stages import split_stages

    path = Path(dockerfile) if dockerfile and os.path.isabs(dockerfile) \
        else context / (dockerfile or "Dockerfile")
    try:
        _, stages = split_stages(parse(path.read_text(), path.name))
    except (OSError, UnicodeDecodeError, BuildError):
        return None
    names: set[str] = set()
    bases: list[str] = []
    for stage in stages:
        base = stage.base
        if "$" in base:
            return None
        if base.lower() not in names and base != "scratch" and base not in bases:
            bases.append(base)
        if stage.name:
            names.add(stage.name)
    return bases


def split_ref(ref: str) -> tuple[str, str]:
    """`name[:tag]` to (name, tag), tag defaulting to latest; a registry port is not a tag."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return name, tag


_OCI_RUNTIME_CONFIG = frozenset({
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
    "StopSignal", "ArgsEscaped", "Healthcheck", "OnBuild", "Shell",
})


def familiar(ref: str) -> str:
    """A name as Docker shows it: Podman's `docker.io/library/busybox:1` is `busybox:1`."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


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
    return ImageInfo(id=doc["Id"], tags=[familiar(t) for t in doc.get("RepoTags") or []],
                     config=config,
                     size=int(doc.get("Size") or 0), created=doc.get("Created"))


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
