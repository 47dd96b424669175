"""The Engine protocol: what the plugin, the CLI, the builder and the API server may ask of an
engine. Every engine implements the core; optional capabilities (build, commit, archives,
networks, volumes) are declared in `capabilities`, and `require` turns a missing one into one
clear line instead of an AttributeError deep in a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from pytest_isobox.engine.errors import EngineUnavailable
from pytest_isobox.engine.specs import (
    BuildStep,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineEvent,
    ExecResult,
    ImageInfo,
    LogStream,
    NetworkInfo,
    ProcessStream,
    RestartPolicy,
)

# Beyond the core (create, start, wait, logs, exec, remove, inspect, images by name).
OPTIONAL_CAPABILITIES = frozenset({"build", "commit", "archives", "networks", "volumes",
                                   "streams", "events", "keep"})


@runtime_checkable
class Engine(Protocol):
    """Containers, images, networks and volumes, as Docker's API offers them.

    References: containers by id, id prefix or name; images by `name[:tag]`, `sha256:` id or
    id prefix; networks and volumes by name. Missing things raise the matching *NotFound.
    put_archive/get_archive follow Docker's archive API; a path missing inside the container
    raises ContainerError naming it. prune returns the bytes reclaimed; disk_usage maps
    `Images`, `Containers`, `Volumes`, `Build Cache` to {"count": n, "size": bytes}.
    """

    name: str  # the registry's name: "native", "docker", ...
    # optional capabilities this engine has, of OPTIONAL_CAPABILITIES
    capabilities: frozenset[str]
    swept: list[str]  # what the engine removed at open, left by runs that died

    def close(self) -> None: ...

    # images (build, commit, derive_image: capability "build"; save/load: "archives")
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
    ) -> str: ...
    def import_rootfs(self, source: str | Path, ref: str) -> str: ...
    def image_inspect(self, ref: str) -> ImageInfo: ...
    def images(self) -> list[ImageInfo]: ...
    def tag(self, ref: str, new_ref: str) -> None: ...
    def remove_image(self, ref: str, *, force: bool = False) -> None: ...
    def save_images(self, refs: list[str], path: str | Path) -> None: ...
    def load_images(self, path: str | Path) -> list[str]: ...
    def commit(self, container: str, *, config: dict | None = None, created_by: str = "",
               remove: bool = False) -> str:
        """A new image of the container's image plus its changes as one layer; `remove`: the
        container (stopped) goes with it, which lets an engine hand its files over whole."""
        ...
    def derive_image(
        self, base: str | None, *, config: dict, created_by: str, author: str | None = None,
    ) -> str:
        """A new image: base's layers (none if base is None: scratch) with a new runtime config
        (the OCI `config` section) and one empty-layer history entry; author None keeps base's."""
        ...
    def prune(self) -> int: ...
    def disk_usage(self) -> dict[str, dict]:
        """Space used: for Images, Containers, Volumes and Build Cache a count and a size;
        Images also "per_image" (id, tags, size, shared_size, unique_size), as Docker's
        `system df -v` counts a layer several images stack as shared."""
        ...

    # containers
    def create(self, spec: ContainerSpec) -> ContainerState: ...
    def start(self, container: str) -> ContainerState: ...
    def run(self, spec: ContainerSpec) -> ContainerState: ...
    def wait(self, container: str, timeout: float | None = None) -> int: ...
    def stop(self, container: str, timeout: float | None = None) -> None: ...
    def kill(self, container: str, signal: str = "SIGKILL") -> None: ...
    def remove(self, container: str, *, force: bool = False) -> None: ...
    def state(self, container: str) -> ContainerState: ...
    def inspect(self, container: str) -> dict: ...
    def containers(self, *, all: bool = False) -> list[ContainerState]: ...
    def logs(
        self, container: str, *, stdout: bool = True, stderr: bool = True,
        follow: bool = False, tail: int | None = None,
    ) -> Iterator[tuple[LogStream, bytes]]: ...
    def exec(
        self, container: str, cmd: list[str], *, env: dict[str, str] | None = None,
        user: str | None = None, workdir: str | None = None,
    ) -> ExecResult: ...
    # copying files in and out (capability "archives")
    def put_archive(self, container: str, path: str, data: bytes | IO[bytes]) -> None: ...
    def get_archive(self, container: str, path: str) -> bytes: ...
    def stats(self, container: str) -> ContainerStats: ...
    def update(self, container: str, *, mem_limit: int | None = ..., cpus: float | None = ...,
               cpu_shares: int | None = ..., pids_limit: int | None = ...,
               restart: RestartPolicy | None = ...) -> None:
        """`docker update`: only the values given change (None: no limit); a running
        container gets them at once, later starts keep them."""
        ...
    def run_attached(self, spec: ContainerSpec) -> int: ...
    def exec_attached(
        self, container: str, cmd: list[str], *, tty: bool, stdin: bool,
        env: dict[str, str] | None = None, user: str | None = None, workdir: str | None = None,
    ) -> int: ...
    # interactive stdio (capability "streams")
    def exec_stream(
        self, container: str, cmd: list[str], *, tty: bool = False, stdin: bool = False,
        env: dict[str, str] | None = None, user: str | None = None, workdir: str | None = None,
    ) -> ProcessStream:
        """`cmd` started in the running container, its stdio given to the caller (the API's
        hijacked `exec start`): output as it comes, stdin as the caller writes it."""
        ...
    def start_stream(self, container: str, *, stdin: bool = True,
                     output: bool = False) -> ProcessStream:
        """Start the created container with its stdin a pipe the caller writes (`docker run
        -i`); its output goes to the log as always (also to the stream's fds with `output`)."""
        ...
    def resize(self, container: str, rows: int, columns: int) -> None:
        """A running tty container's terminal size."""
        ...

    # what changed (capability "events")
    def events(
        self, *, since: float | None = None, until: float | None = None, follow: bool = True,
    ) -> Iterator[EngineEvent | None]:
        """Events from `since` (None: only new ones when following, all kept otherwise) up
        to `until`; following, it yields None when nothing happened for about a second, so
        the caller can notice its own client went away; it ends after `until`."""
        ...

    # an exited container made persistent after all (capability "keep"): a foreground
    # `isobox run` owns its container while it runs (a killed CLI takes it along) and keeps it
    # once it has exited, as `docker run` leaves it for `ps -a`
    def keep(self, container: str) -> None: ...

    # networks (capability "networks")
    def network_create(
        self, name: str, *, subnet: str | None = None, labels: dict[str, str] | None = None,
    ) -> NetworkInfo: ...
    def network_remove(self, name: str) -> None: ...
    def network_inspect(self, name: str) -> NetworkInfo: ...
    def networks(self) -> list[NetworkInfo]: ...

    # volumes (capability "volumes")
    def volume_create(self, name: str) -> str: ...
    def volume_remove(self, name: str, *, force: bool = False) -> None: ...
    def volumes(self) -> list[str]: ...


def require(engine: Engine, capability: str, what: str) -> None:
    """Raise EngineUnavailable, one line naming the engine and `what` the caller needed,
    when `engine` lacks `capability` (one of OPTIONAL_CAPABILITIES)."""
    assert capability in OPTIONAL_CAPABILITIES, capability
    if capability not in getattr(engine, "capabilities", OPTIONAL_CAPABILITIES):
        raise EngineUnavailable(f"the {engine.name} engine cannot {what} "
                                f"(it has no {capability!r} capability)")
