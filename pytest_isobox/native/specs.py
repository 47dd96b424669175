"""What the engine derives from a ContainerSpec and an image config, the way Docker does."""

from __future__ import annotations

import signal

from pytest_isobox.engine import (
    ContainerSpec,
    DeviceSpec,
    HealthcheckSpec,
    InvalidSpec,
    MountSpec,
    NetworkAttachment,
    PortSpec,
    RestartPolicy,
)
from pytest_isobox.engine.records import as_dict


def signal_number(value: str | int) -> int:
    """`SIGTERM`, `TERM`, `15` to 15; InvalidSpec names a value that is no signal."""
    text = str(value).strip().upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals["SIG" + text.removeprefix("SIG")])
    except KeyError:
        raise InvalidSpec(f"invalid signal {value!r}") from None


def command_line(image_config: dict, spec: ContainerSpec) -> list[str]:
    """Docker's argv: entrypoint + command; overriding the entrypoint drops the image's Cmd."""
    entrypoint = spec.entrypoint if spec.entrypoint is not None \
        else list(image_config.get("Entrypoint") or [])
    if spec.command is not None:
        cmd = list(spec.command)
    elif spec.entrypoint is not None:
        cmd = []
    else:
        cmd = list(image_config.get("Cmd") or [])
    argv = [*entrypoint, *cmd]
    if not argv:
        raise InvalidSpec(f"no command specified for image {spec.image!r}: give a command")
    return argv


def env_dict(entries: list[str]) -> dict[str, str]:
    """An image's `KEY=value` list as a dict (later entries win)."""
    env: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        env[key] = value
    return env


def spec_to_dict(spec: ContainerSpec) -> dict:
    """A spec as JSON-ready data, for config.json."""
    return as_dict(spec)


def spec_from_dict(raw: dict) -> ContainerSpec:
    """The spec back from config.json, nested values included."""
    data = dict(raw)
    data["ports"] = [PortSpec(**p) for p in data.get("ports", [])]
    data["mounts"] = [MountSpec(**m) for m in data.get("mounts", [])]
    data["networks"] = [NetworkAttachment(n["network"], tuple(n.get("aliases", ())),
                                          n.get("ip"))
                        for n in data.get("networks", [])]
    data["devices"] = [DeviceSpec(**d) for d in data.get("devices", [])]
    if data.get("restart") is not None:
        data["restart"] = RestartPolicy(**data["restart"])
    if data.get("healthcheck") is not None:
        health = dict(data["healthcheck"])
        data["healthcheck"] = HealthcheckSpec(**{**health, "test": tuple(health["test"])})
    return ContainerSpec(**data)


def network_kind(spec: ContainerSpec | dict) -> str:
    """How a container is networked, decided here only: "host" (the host's namespace),
    "none" (a namespace with loopback alone) or "managed" (the NetworkManager attaches it)."""
    networks, mode = (spec["networks"], spec["network_mode"]) if isinstance(spec, dict) \
        else (spec.networks, spec.network_mode)
    if not networks and mode in ("host", "none"):
        return mode
    return "managed"
