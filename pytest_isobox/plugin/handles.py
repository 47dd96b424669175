"""What tests hold: `Container`, `Image`, `Network` and `Volume` handles over one Engine.

Handles read fresh state from the engine when asked (status, ports after a restart); `str()`
of a handle is what other fixtures' templates need: a container's name, an image's reference,
a network's or volume's name.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from pytest_isobox import copying
from pytest_isobox.engine import (
    BuildStep,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    Engine,
    InvalidSpec,
)


class ExecOutput(NamedTuple):
    """The result of `Container.exec`: unpacks as `(exit_code, output)`."""

    exit_code: int
    output: str


@dataclass
class Image:
    """A built or imported image. `ref` is its tag when it has one, else its id."""

    id: str
    tag: str | None = None
    source: str = ""  # the build context or rootfs it came from
    seconds: float = 0.0  # build or import time in this run
    steps: list[BuildStep] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return self.tag or self.id

    @property
    def cached(self) -> bool:
        """True when every build step (but FROM, which only names the base) came from the cache."""
        steps = [s for s in self.steps if not s.instruction.lstrip().upper().startswith("FROM")]
        return bool(steps) and all(step.cached for step in steps)

    def __str__(self) -> str:
        return self.ref


@dataclass
class Network:
    name: str
    id: str = ""
    subnet: str | None = None
    gateway: str | None = None

    def __str__(self) -> str:
        return self.name


@dataclass
class Volume:
    name: str

    def __str__(self) -> str:
        return self.name


class Container:
    """A running (or exited) container of a fixture or of the `isobox` fixture."""

    def __init__(self, engine: Engine, state: ContainerState, spec: ContainerSpec, *,
                 fixture: str = "", network_names: dict[str, str] | None = None) -> None:
        self.engine = engine
        self.spec = spec
        self.fixture = fixture or state.name
        self._state = state
        self._network_names = network_names or {}  # fixture name -> network name
        self._image_config: dict | None = None

    def __repr__(self) -> str:
        return f"<Container {self.name} {self.id[:12]} {self.image}>"

    def __str__(self) -> str:
        return self.name

    # identity
    @property
    def id(self) -> str:
        return self._state.id

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def image(self) -> str:
        return self.spec.image

    # state
    @property
    def last_state(self) -> ContainerState:
        """The last snapshot (from run or the last poll), without asking the engine."""
        return self._state

    def poll_state(self) -> ContainerState:
        """A fresh snapshot from the engine (also kept for `ip`, `ips` and `get_addr`)."""
        self._state = self.engine.state(self.id)
        return self._state

    def inspect(self) -> dict:
        """The engine's inspect document, in Docker's shape (State.Health, NetworkSettings)."""
        return self.engine.inspect(self.id)

    @property
    def status(self) -> str:
        return self.poll_state().status

    @property
    def exit_code(self) -> int | None:
        return self.poll_state().exit_code

    def health(self) -> dict:
        """State.Health as the engine keeps it (Status, FailingStreak, Log); {} without a
        healthcheck, or before the first record of one."""
        return (self.engine.inspect(self.id).get("State") or {}).get("Health") or {}

    @property
    def ips(self) -> dict[str, str]:
        """IP address per network name (a network fixture's name works as a key too)."""
        ips = dict(self._state.ips)
        for fixture, network in self._network_names.items():
            if network in ips:
                ips.setdefault(fixture, ips[network])
        return ips

    @property
    def ip(self) -> str:
        """The address on the container's first network."""
        if not self._state.ips:
            raise InvalidSpec(f"container {self.name} has no IP address (network mode none?)")
        return next(iter(self._state.ips.values()))

    def published_ports(self) -> list[str]:
        """Keys (`8000/tcp`) of the ports asked to be published, bound or not (yet)."""
        return list(dict.fromkeys([*(p.key for p in self.spec.ports), *self._state.ports]))

    def get_addr(self, port: int | str) -> tuple[str, int]:
        """(host, port) where the host reaches a published container port, e.g. `8000/tcp`."""
        key = _port_key(port)
        bindings = self._state.ports.get(key)
        if not bindings:
            raise InvalidSpec(f"container {self.name}: port {key} is not published "
                              f"(published: {', '.join(self._state.ports) or 'none'})")
        host, host_port = bindings[0]
        return ("127.0.0.1" if host in ("", "0.0.0.0") else host), host_port

    def probe_addr(self, port: int | str) -> tuple[str, int]:
        """The published address of a port, else the container's own IP and port."""
        if _port_key(port) in self._state.ports:
            return self.get_addr(port)
        return self.ip, int(str(port).split("/")[0])

    def direct_addr(self, port: int | str) -> tuple[str, int] | None:
        """The container's own address for a port, when it has one the host can reach."""
        if not self._state.ips or self.spec.network_mode in ("host", "none"):
            return None
        if getattr(self.engine, "remote_host", None):  # container IPs live on another machine
            return None
        return self.ip, int(str(port).split("/")[0])

    # processes and output
    def logs(self, *, stream: str | None = None, tail: int | None = None) -> str:
        """stdout and stderr in the order written (or one `stream`), decoded as UTF-8."""
        pieces = self.engine.logs(self.id, stdout=stream in (None, "stdout"),
                                  stderr=stream in (None, "stderr"), tail=tail)
        return b"".join(data for _, data in pieces).decode("utf-8", "replace")

    def exec(self, cmd: str | Sequence[str], *, env: dict[str, str] | None = None,
             user: str | None = None, workdir: str | None = None) -> ExecOutput:
        """Run cmd (a list, or a string split like a shell would) in the running container."""
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        result = self.engine.exec(self.id, argv, env=env, user=user, workdir=workdir)
        return ExecOutput(result.exit_code, result.output.decode("utf-8", "replace"))

    def stats(self) -> ContainerStats:
        return self.engine.stats(self.id)

    def image_config(self) -> dict:
        """The image's OCI config section (Env, Cmd, Healthcheck, ...)."""
        if self._image_config is None:
            info = self.engine.image_inspect(self._state.image_id or self.image)
            self._image_config = info.config.get("config", info.config)
        return self._image_config

    # lifecycle
    def stop(self, timeout: float | None = None) -> None:
        self.engine.stop(self.id, timeout)
        self.poll_state()

    def kill(self, signal: str = "SIGKILL") -> None:
        self.engine.kill(self.id, signal)

    def start(self) -> None:
        self._state = self.engine.start(self.id)

    def restart(self, timeout: float | None = None) -> None:
        """Stop and start again; published host ports may change, `get_addr` follows."""
        if self.poll_state().running:
            self.engine.stop(self.id, timeout)
        self.start()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container to exit; its exit code."""
        code = self.engine.wait(self.id, timeout)
        self.poll_state()
        return code

    # files
    def copy_to(self, host_path: str | Path, container_path: str) -> None:
        """Copy a host file or directory into the container (as `docker cp`)."""
        copying.copy_to(self.engine, self.id, host_path, container_path)

    def copy_from(self, container_path: str, host_path: str | Path) -> Path:
        """Copy a file or directory out of the container (as `docker cp`); the path written."""
        return copying.copy_from(self.engine, self.id, container_path, host_path)


def _port_key(port: int | str) -> str:
    text = str(port)
    return text if "/" in text else f"{text}/tcp"
