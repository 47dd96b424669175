"""The user's container arguments (after templating) as an engine `ContainerSpec`.

Accepts Docker's shapes: strings or lists for commands, dicts or `K=V` lists for the
environment, `-p` strings for ports, `SRC:DST[:ro]` strings, dicts or `MountSpec` for mounts.
Every malformed value raises `InvalidSpec` naming the argument and the value.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from pytest_isobox import dockerargs, run_options_table
from pytest_isobox.engine import (
    ContainerSpec,
    DeviceSpec,
    HealthcheckSpec,
    InvalidSpec,
    MountSpec,
    NetworkAttachment,
    PortSpec,
    parse_size,
)
from pytest_isobox.engine.records import as_dict

FIXTURE_LABEL = "io.isobox.fixture"
WORKER_LABEL = "io.isobox.worker"
CONFIG_HASH_LABEL = "io.isobox.config-hash"


@dataclass
class _Options:
    """Everything `container()` and `isobox.run()` accept besides readiness, lifetime and the
    simple run options (run_options_table.TABLE: ContainerOptions adds one field per row)."""

    image: str
    command: str | Sequence[str] | None = None
    entrypoint: str | Sequence[str] | None = None
    environment: Mapping[str, Any] | Sequence[str] | None = None
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    ports: Sequence[str | int] = ()
    network: str | None = None
    networks: Sequence[str] | Mapping[str, Sequence[str]] | None = None
    aliases: Sequence[str] = ()
    mounts: Sequence[str | Mapping[str, Any] | MountSpec] = ()
    mem_limit: int | str | None = None
    cpus: float | str | None = None
    pids_limit: int | str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str | None = None
    devices: Sequence[str | DeviceSpec] = ()
    sysctls: Mapping[str, Any] | Sequence[str] | None = None
    env_file: str | Path | Sequence[str | Path] | None = None
    publish_all: bool = False
    expose: Sequence[str | int] = ()
    ip: str | None = None
    platform: str | None = None
    restart: str | None = None
    healthcheck: Mapping[str, Any] | HealthcheckSpec | bool | None = None

    def to_spec(self, *, name: str, fixture: str, worker: str, base: Path,
                persistent: bool) -> ContainerSpec:
        """The spec to create; relative bind sources are taken from `base`."""
        network_mode, attachments = self._networks(fixture)
        return ContainerSpec(
            image=str(self.image),
            command=_argv("command", self.command),
            entrypoint=_argv("entrypoint", self.entrypoint),
            env={**self._env_files(base), **dockerargs.parse_env(self.environment)},
            working_dir=self.working_dir,
            user=None if self.user is None else str(self.user),
            hostname=self.hostname,
            name=name,
            labels={**{k: str(v) for k, v in dict(self.labels).items()},
                    FIXTURE_LABEL: fixture, WORKER_LABEL: worker},
            mem_limit=_size("mem_limit", self.mem_limit),
            cpus=_number("cpus", self.cpus, float),
            pids_limit=_number("pids_limit", self.pids_limit, int),
            network_mode=network_mode,
            networks=attachments,
            ports=[PortSpec.parse(p) for p in self.ports],
            mounts=[_mount(m, base) for m in self.mounts],
            stop_signal=self.stop_signal,
            persistent=persistent,
            devices=[d if isinstance(d, DeviceSpec) else dockerargs.parse_device(str(d))
                     for d in self.devices],
            sysctls=dict(dockerargs.parse_sysctl(item, network_mode if not attachments
                                                 else "bridge")
                         for item in _pairs(self.sysctls)),
            publish_all=bool(self.publish_all),
            expose=[k for e in self.expose for k in dockerargs.parse_expose(e)],
            ip=dockerargs.parse_ip(self.ip, "ip=") if self.ip else None,
            platform=dockerargs.check_platform(self.platform),
            restart=dockerargs.parse_restart(self.restart),
            healthcheck=self._healthcheck(),
            **run_options_table.spec_values({row.field: getattr(self, row.field)
                                             for row in run_options_table.TABLE}, prefix=True),
        )

    def _env_files(self, base: Path) -> dict[str, str]:
        """`env_file=`: Docker's --env-file, one path or several, relative to the test."""
        files = [] if self.env_file is None else [self.env_file] \
            if isinstance(self.env_file, str | Path) else list(self.env_file)
        return dockerargs.parse_env([e for f in files for e in dockerargs.parse_key_value_file(
            base / Path(f).expanduser(), from_environment=True)])

    def _healthcheck(self) -> HealthcheckSpec | None:
        """`healthcheck=`: a HealthcheckSpec, False (--no-healthcheck), or a mapping with
        cmd (a shell string or an argv list), interval, timeout, retries, start_period."""
        value = self.healthcheck
        if value is None or isinstance(value, HealthcheckSpec):
            return value
        if value is False:
            return dockerargs.healthcheck(disabled=True)
        if not isinstance(value, Mapping):
            raise InvalidSpec(f"healthcheck={value!r}: expected a mapping, a HealthcheckSpec "
                              "or False")
        unknown = set(value) - {"cmd", "interval", "timeout", "retries", "start_period"}
        if unknown:
            raise InvalidSpec(f"healthcheck: unknown key {min(unknown)!r}")
        return dockerargs.healthcheck(value.get("cmd"), interval=value.get("interval"),
                                      timeout=value.get("timeout"),
                                      retries=value.get("retries"),
                                      start_period=value.get("start_period"))

    def _networks(self, fixture: str) -> tuple[str, list[NetworkAttachment]]:
        if self.network is not None and self.networks:
            raise InvalidSpec("give network= or networks=, not both")
        names: Mapping[str, Sequence[str]]
        if self.networks is None:
            names = {str(self.network): ()} if self.network else {}
        elif isinstance(self.networks, Mapping):
            names = self.networks
        else:
            names = {str(n): () for n in self.networks}
        if len(names) == 1 and next(iter(names)) in dockerargs.BUILTIN_NETWORK_MODES:
            return dockerargs.network_choice(names)
        # on a named network the container answers to its fixture's name too
        return dockerargs.network_choice({
            str(net): [*map(str, self.aliases), *map(str, extra), fixture]
            for net, extra in names.items()})


ContainerOptions = make_dataclass(
    "ContainerOptions", [(row.field, Any, field(default=row.default))
                         for row in run_options_table.TABLE], bases=(_Options,))
ContainerOptions.__module__ = __name__
ContainerOptions.__doc__ = ("Everything `container()` and `isobox.run()` accept besides "
                            "readiness and lifetime: _Options' fields and one per simple run "
                            "option (run_options_table.TABLE).")


def config_hash(spec: ContainerSpec, image_id: str) -> str:
    """A digest of everything that makes a container what it is (reuse compares it)."""
    import hashlib  # ~3 ms: only --isobox-reuse needs it

    doc = as_dict(spec)
    doc["labels"] = {k: v for k, v in doc["labels"].items() if k != CONFIG_HASH_LABEL}
    doc["image_id"] = image_id
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _pairs(value: Mapping[str, Any] | Sequence[str] | None, sep: str = "=") -> list[str]:
    """`KEY=VALUE` strings from a mapping or a list of them."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [f"{k}{sep}{v}" for k, v in value.items()]
    return [str(v) for v in value]


def _argv(what: str, value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise InvalidSpec(f"{what}={value!r}: {exc}") from None
    return [str(v) for v in value]


def _size(what: str, value: int | str | None) -> int | None:
    try:
        return parse_size(value)
    except InvalidSpec as exc:
        raise InvalidSpec(f"{what}: {exc}") from None


def _number(what: str, value: object, kind: type) -> Any:
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise InvalidSpec(f"{what}={value!r}: expected a positive number")
    return number


def _mount(value: str | Mapping[str, Any] | MountSpec, base: Path) -> MountSpec:
    """A mount as `container(mounts=[...])` takes it: a MountSpec, Docker's `--mount` fields
    as a mapping, or `-v` syntax (with `tmpfs:DST` for a tmpfs)."""
    if isinstance(value, MountSpec):
        return value
    if isinstance(value, Mapping):
        return dockerargs.parse_mount(value, base)
    return dockerargs.parse_volume(str(value), base, tmpfs_source=True)
