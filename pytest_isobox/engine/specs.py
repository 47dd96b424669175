"""The seam's plain data: what to run (ContainerSpec and its parts) and what engines report
(ContainerState, ImageInfo, NetworkInfo, ...). No engine-specific knowledge.

Records (records.record), not dataclasses: the same constructors, defaults, equality, repr
and, for the frozen ones, hashes, at a fraction of @dataclass's cost on every `isobox run`;
`records.as_dict` and `records.replace` are dataclasses' asdict and replace for them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Literal

# (the records engines report: plain classes, see records.py; kept importable from here)
from pytest_isobox.engine.records import (  # noqa: F401
    ContainerState,
    FrozenRecord,
    ImageInfo,
    NetworkInfo,
    Record,
    factory,
    record,
)


@record
class PortSpec(FrozenRecord):
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
        """Docker's `-p` syntax (dockerargs.parse_port)."""
        from pytest_isobox.dockerargs import parse_port

        return parse_port(text)


@record
class MountSpec(FrozenRecord):
    """A bind mount of a host path, a tmpfs, or a named volume, at `target` in the container."""

    type: Literal["bind", "tmpfs", "volume"]
    target: str
    source: str = ""
    read_only: bool = False
    size: int | None = None  # tmpfs only, bytes


@record
class NetworkAttachment(FrozenRecord):
    """Membership of one named network, with the extra names the container answers to there,
    and the address asked for there (`network connect --ip`; None: one is allocated)."""

    network: str
    aliases: tuple[str, ...] = ()
    ip: str | None = None


@record
class DeviceSpec(FrozenRecord):
    """A host device node given to the container (`--device HOST[:CONTAINER][:PERMS]`):
    made at `container_path` with the host node's type and numbers, and opened as
    `permissions` (r, w, m) allow."""

    host_path: str
    container_path: str
    permissions: str = "rwm"


@record
class RestartPolicy(FrozenRecord):
    """Docker's `--restart`: name `no`, `on-failure` (at most `maximum_retry` restarts when
    it is > 0), `always` or `unless-stopped`."""

    name: str = "no"
    maximum_retry: int = 0


@record
class HealthcheckSpec(FrozenRecord):
    """Docker's healthcheck: `test` as Docker's Config.Healthcheck.Test (`["CMD-SHELL",
    "cmd"]`, `["CMD", ...]`, or `["NONE"]` to turn the image's off); times in seconds, 0 for
    Docker's defaults (interval 30, timeout 30, retries 3, start period 0)."""

    test: tuple[str, ...]
    interval: float = 0.0
    timeout: float = 0.0
    retries: int = 0
    start_period: float = 0.0


@record
class ContainerSpec(Record):
    """What to run. Fields left None take the image's value (Cmd, Entrypoint, WorkingDir, User).

    network_mode is `bridge` (the default network), `none`, `host`, or a network name;
    `networks` lists named networks (with aliases) and, when given, replaces network_mode.
    persistent containers outlive the process that created them (CLI `run -d`, reuse);
    the others die with it and are swept.
    """

    image: str
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: dict[str, str] = factory(dict)
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    name: str | None = None
    labels: dict[str, str] = factory(dict)
    mem_limit: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    init: bool = False
    tty: bool = False
    stdin_open: bool = False
    network_mode: str = "bridge"
    networks: list[NetworkAttachment] = factory(list)
    ports: list[PortSpec] = factory(list)
    mounts: list[MountSpec] = factory(list)
    stop_signal: str | None = None
    stop_timeout: float = 10.0
    auto_remove: bool = False
    persistent: bool = False
    ulimits: dict[str, tuple[int, int]] = factory(dict)  # name -> (soft, hard)
    security_opt: list[str] = factory(list)  # Docker's, e.g. seccomp=unconfined
    read_only: bool = False  # the root filesystem mounted read-only (--read-only)
    cap_add: list[str] = factory(list)
    """Capabilities given beyond Docker's defaults (`--cap-add`), `CAP_` names or `ALL`."""
    cap_drop: list[str] = factory(list)
    """Capabilities taken from Docker's defaults (`--cap-drop`); `ALL` drops every one."""
    privileged: bool = False
    """`--privileged`: every capability, no seccomp filter, no masked or read-only paths, the
    host's devices (what the host allows)."""
    extra_hosts: list[str] = factory(list)
    """`--add-host NAME:IP` lines of /etc/hosts; IP `host-gateway` is the host as the
    container reaches it (its network's gateway)."""
    dns: list[str] = factory(list)
    """`--dns`: the nameservers of the container's resolv.conf, instead of the host's."""
    dns_search: list[str] = factory(list)
    """`--dns-search`: the search domains of the container's resolv.conf."""
    dns_options: list[str] = factory(list)
    """`--dns-option`: the options line of the container's resolv.conf."""
    publish_all: bool = False
    """`-P`: every exposed port (the image's and `expose`) published on a free loopback port."""
    expose: list[str] = factory(list)
    """`--expose PORT[/PROTO]`: ports exposed beside the image's (`80/tcp`), unpublished."""
    shm_size: int | None = None
    """`--shm-size`: bytes of /dev/shm (Docker's default 64 MiB when None)."""
    sysctls: dict[str, str] = factory(dict)
    """`--sysctl`: namespaced kernel parameters set in the container (dockerargs checks)."""
    ip: str | None = None
    """`--ip`: the container's IPv4 address on its first user-defined network."""
    devices: list[DeviceSpec] = factory(list)
    """`--device`: host device nodes the container gets, with cgroup permission to use them."""
    platform: str | None = None
    """`--platform`: only the host's own is accepted (dockerargs.check_platform)."""
    restart: RestartPolicy | None = None
    """`--restart`: restarted by the container's monitor (native) or the daemon (docker)."""
    healthcheck: HealthcheckSpec | None = None
    """`--health-*` (None: the image's HEALTHCHECK, if any)."""



@record
class ExecResult(Record):
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def output(self) -> bytes:
        return self.stdout + self.stderr


@record
class ProcessStream(Record):
    """A process's stdio handed to the caller (capability "streams"): write to `stdin`
    (None unless asked for; close it for EOF), read `stdout` and `stderr` until EOF (a tty
    has only `stdout`, both streams in one; none when the output goes only to the log).
    The caller owns these fds and closes them; `wait()` gives the exit code, `resize`
    (rows, columns) sets a tty's size. A command that cannot start is not an error: its
    stream gives Docker's message on stderr and `wait()` its 126/127."""

    stdin: int | None
    stdout: int | None
    stderr: int | None
    wait: Callable[[], int]
    resize: Callable[[int, int], None] | None = None
    pid: int = 0

    def close(self) -> None:
        """Close what is still open of the caller's fds."""
        for name in ("stdin", "stdout", "stderr"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                with contextlib.suppress(OSError):
                    os.close(fd)


@record
class EngineEvent(Record):
    """Something that changed in an engine (capability "events"), as Docker's events name
    it: `type` container, image, network or volume; `action` create, start, die, destroy,
    pull, tag, ...; `id` what it happened to; `attributes` (name, image, exitCode, labels);
    `time` in seconds since the epoch."""

    type: str
    action: str
    id: str
    attributes: dict[str, str] = factory(dict)
    time: float = 0.0


@record
class ContainerStats(Record):
    memory_current: int
    memory_peak: int
    cpu_time_ns: int
    pids: int
    block_read: int = 0  # bytes read from and written to block devices (Docker's BlockIO)
    block_write: int = 0




@record
class BuildStep(Record):
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
