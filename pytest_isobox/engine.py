"""The one seam between users of containers and the engines that make them.

The plugin, the CLI and the builder speak only to `Engine`. Two implementations exist:
`pytest_isobox.native.engine.NativeEngine` (embedded, daemonless) and
`pytest_isobox.docker.engine.DockerEngine` (a Docker Engine over its REST API).
Everything here is plain data and errors: no engine-specific knowledge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol, runtime_checkable

# --------------------------------------------------------------------------- errors

class IsoboxError(Exception):
    """Base of every error this package raises on purpose."""


class EngineUnavailable(IsoboxError):
    """A prerequisite is missing (not root, no overlayfs, no cgroup controller, no daemon)."""


class ImageNotFound(IsoboxError):
    """No image matches the reference."""


class ContainerNotFound(IsoboxError):
    """No container matches the id or name."""


class NetworkNotFound(IsoboxError):
    """No network matches the name or id."""


class VolumeNotFound(IsoboxError):
    """No volume has that name."""


class ConflictError(IsoboxError):
    """A name is taken, or a resource is in use (an image used by a container, a busy network)."""


class BuildError(IsoboxError):
    """A build failed; the message names the Dockerfile, the line or the failing step."""


class ContainerError(IsoboxError):
    """A container could not be created, started, exec'd into, or copied to or from."""


class InvalidSpec(IsoboxError, ValueError):
    """A value given by the user is malformed; the message names it."""


# --------------------------------------------------------------------------- values

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: int | str | None) -> int | None:
    """Docker's size syntax (`256m`, `1g`, `512k`, `1024`) to bytes; None stays None."""
    if value is None or isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*", str(value).lower())
    if not m:
        raise InvalidSpec(f"invalid size {value!r}: expected a number with an optional unit b, k, m, g")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


@dataclass(frozen=True)
class PortSpec:
    """One published port. host_port 0 picks a free port; host_ip defaults to loopback."""

    container_port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: str = "127.0.0.1"
    host_port: int = 0

    @property
    def key(self) -> str:
        """Docker's name for the container side, e.g. `8080/tcp`."""
        return f"{self.container_port}/{self.protocol}"

    @classmethod
    def parse(cls, text: str | int) -> PortSpec:
        """Docker's `-p` syntax: `8080`, `8080/udp`, `9000:8080`, `127.0.0.1:0:8080/tcp`."""
        raw = str(text)
        body, _, proto = raw.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp"):
            raise InvalidSpec(f"invalid port {raw!r}: protocol must be tcp or udp")
        parts = body.rsplit(":", 2) if not body.startswith("[") else _split_v6(body)
        try:
            if len(parts) == 1:
                return cls(_port(parts[0], raw), proto)
            if len(parts) == 2:
                return cls(_port(parts[1], raw), proto, host_port=_port(parts[0] or "0", raw, 0))
            host_ip = parts[0].strip("[]") or "127.0.0.1"
            return cls(_port(parts[2], raw), proto, host_ip, _port(parts[1] or "0", raw, 0))
        except ValueError as exc:
            raise InvalidSpec(str(exc)) from None


def _split_v6(body: str) -> list[str]:
    host, _, rest = body[1:].partition("]")
    return [host, *rest.lstrip(":").split(":")]


def _port(text: str, raw: str, low: int = 1) -> int:
    if not text.isdigit() or not low <= int(text) <= 65535:
        raise ValueError(f"invalid port {raw!r}: {text!r} is not a port number")
    return int(text)


ULIMIT_NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack", "as")


def parse_ulimit(text: str) -> tuple[str, tuple[int, int]]:
    """Docker's `--ulimit name=soft[:hard]` (-1 for unlimited) to (name, (soft, hard))."""
    name, sep, values = text.partition("=")
    soft, _, hard = values.partition(":")
    try:
        limits = (int(soft), int(hard or soft))
    except ValueError:
        limits = None
    if not sep or name not in ULIMIT_NAMES or limits is None:
        raise InvalidSpec(f"invalid ulimit {text!r}: expected NAME=SOFT[:HARD] with NAME one of "
                          f"{', '.join(ULIMIT_NAMES)}")
    soft_value, hard_value = (float("inf") if v == -1 else v for v in limits)
    if soft_value > hard_value:
        raise InvalidSpec(f"invalid ulimit {text!r}: soft limit above hard limit")
    return name, limits


@dataclass(frozen=True)
class MountSpec:
    """A bind mount of a host path, a tmpfs, or a named volume, at `target` in the container."""

    type: Literal["bind", "tmpfs", "volume"]
    target: str
    source: str = ""
    read_only: bool = False
    size: int | None = None  # tmpfs only, bytes


@dataclass(frozen=True)
class NetworkAttachment:
    """Membership of one named network, with the extra names the container answers to there."""

    network: str
    aliases: tuple[str, ...] = ()


@dataclass
class ContainerSpec:
    """What to run. Fields left None take the image's value (Cmd, Entrypoint, WorkingDir, User).

    network_mode is `bridge` (the default network), `none`, `host`, or a network name;
    `networks` lists named networks (with aliases) and, when given, replaces network_mode.
    persistent containers outlive the process that created them (CLI `run -d`, reuse);
    the others die with it and are swept.
    """

    image: str
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    mem_limit: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    init: bool = False
    tty: bool = False
    stdin_open: bool = False
    network_mode: str = "bridge"
    networks: list[NetworkAttachment] = field(default_factory=list)
    ports: list[PortSpec] = field(default_factory=list)
    mounts: list[MountSpec] = field(default_factory=list)
    stop_signal: str | None = None
    stop_timeout: float = 10.0
    auto_remove: bool = False
    persistent: bool = False
    ulimits: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (soft, hard)
    security_opt: list[str] = field(default_factory=list)  # Docker's, e.g. seccomp=unconfined


@dataclass
class ContainerState:
    """A snapshot of one container. status is created, running, exited or dead."""

    id: str
    name: str
    image: str
    image_id: str
    status: str
    pid: int | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    ips: dict[str, str] = field(default_factory=dict)
    ports: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def output(self) -> bytes:
        return self.stdout + self.stderr


@dataclass
class ContainerStats:
    memory_current: int
    memory_peak: int
    cpu_time_ns: int
    pids: int


@dataclass
class ImageInfo:
    """An image: id is `sha256:<config digest>`; config is the OCI image config document."""

    id: str
    tags: list[str]
    config: dict
    size: int = 0
    created: str | None = None


@dataclass
class NetworkInfo:
    name: str
    id: str
    driver: str
    subnet: str | None
    gateway: str | None
    containers: dict[str, str] = field(default_factory=dict)  # container id -> ip
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildStep:
    """Progress of one build instruction, passed to a build's on_step callback."""

    index: int
    total: int
    instruction: str
    cached: bool
    seconds: float
    image_id: str | None
    output: str = ""


LogStream = Literal["stdout", "stderr"]

# A label that keeps a network or container past its creator's life (no sweep of dead owners).
PERSISTENT_LABEL = "io.isobox.persistent"



# --------------------------------------------------------------------------- the interface

@runtime_checkable
class Engine(Protocol):
    """Containers, images, networks and volumes, as Docker's API offers them.

    References: containers by id, id prefix or name; images by `name[:tag]`, `sha256:` id or
    id prefix; networks and volumes by name. Missing things raise the matching *NotFound.
    put_archive/get_archive follow Docker's archive API; a path missing inside the container
    raises ContainerError naming it. prune returns the bytes reclaimed; disk_usage maps
    `Images`, `Containers`, `Volumes`, `Build Cache` to {"count": n, "size": bytes}.
    """

    name: str  # "native" or "docker"

    def close(self) -> None: ...

    # images
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
    def put_archive(self, container: str, path: str, data: bytes | IO[bytes]) -> None: ...
    def get_archive(self, container: str, path: str) -> bytes: ...
    def stats(self, container: str) -> ContainerStats: ...
    def run_attached(self, spec: ContainerSpec) -> int: ...
    def exec_attached(
        self, container: str, cmd: list[str], *, tty: bool, stdin: bool,
        env: dict[str, str] | None = None, user: str | None = None, workdir: str | None = None,
    ) -> int: ...

    # networks
    def network_create(
        self, name: str, *, subnet: str | None = None, labels: dict[str, str] | None = None,
    ) -> NetworkInfo: ...
    def network_remove(self, name: str) -> None: ...
    def network_inspect(self, name: str) -> NetworkInfo: ...
    def networks(self) -> list[NetworkInfo]: ...

    # volumes
    def volume_create(self, name: str) -> str: ...
    def volume_remove(self, name: str, *, force: bool = False) -> None: ...
    def volumes(self) -> list[str]: ...


def open_engine(kind: str = "native", **options: object) -> Engine:
    """Make an engine by name: `native` (options: home) or `docker` (options: base_url)."""
    if kind == "native":
        from pytest_isobox.native.engine import NativeEngine

        return NativeEngine(**options)  # type: ignore[arg-type]
    if kind == "docker":
        from pytest_isobox.docker.engine import DockerEngine

        return DockerEngine(**options)  # type: ignore[arg-type]
    raise InvalidSpec(f"unknown engine {kind!r}: expected 'native' or 'docker'")
