"""Docker's container create body (Config + HostConfig + NetworkingConfig) to the seam's
ContainerSpec. Docker's syntaxes inside it (binds, tmpfs options, ports, env, labels) go
through dockerargs, the parsers the CLI and fixtures use. Unknown fields are ignored (as
dockerd's decoder does); a field of the wrong type is a 400 naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_isobox import dockerargs, run_options_table
from pytest_isobox.engine import (
    ContainerSpec,
    MountSpec,
    NetworkAttachment,
    PortSpec,
    RestartPolicy,
)
from pytest_isobox.server.errors import ApiError

_MAX_LIMIT = 1 << 62


def _check(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, float))):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ApiError(400, f"invalid {name}: {value!r} is not a {expected}")
    return value


def _strings(value: Any, name: str) -> list[str] | None:
    """A list of strings; a lone string is split on spaces as the API's string form."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.split()
    _check(value, list, name)
    for item in value:
        _check(item, str, name)
    return list(value)


def _mapping(value: Any, name: str) -> dict:
    if value is None:
        return {}
    return _check(value, dict, name)


def _limit(value: Any, name: str) -> int | None:
    if value in (None, 0):
        return None
    _check(value, int, name)
    if not 0 < value < _MAX_LIMIT:
        raise ApiError(400, f"invalid {name}: {value} is out of range")
    return value


def spec_from_create(body: Any, name: str | None, *, default_ip: str = "127.0.0.1"
                     ) -> ContainerSpec:
    """The ContainerSpec of `POST /containers/create` (query `name`); a port binding with
    no HostIp is published on `default_ip` (the server's `--ip`)."""
    config = _check(body, dict, "request body (expected a JSON object)")
    host = _mapping(config.get("HostConfig"), "HostConfig")
    networking = _mapping(config.get("NetworkingConfig"), "NetworkingConfig")
    image = config.get("Image")
    if not image or not isinstance(image, str):
        raise ApiError(400, "config error: no image given (the Image field is empty)")
    spec = ContainerSpec(image=image)
    spec.name = name.lstrip("/") if name else None
    spec.command = _strings(config.get("Cmd"), "Cmd")
    spec.entrypoint = _strings(config.get("Entrypoint"), "Entrypoint")
    if spec.entrypoint == [""]:
        spec.entrypoint = []
    spec.env = dockerargs.parse_env(_strings(config.get("Env"), "Env") or [], environ={})
    labels = _mapping(config.get("Labels"), "Labels")
    for key, value in labels.items():
        _check(value, str, f"Labels[{key!r}]")
    spec.labels = dockerargs.parse_labels(labels)
    spec.working_dir = _check(config.get("WorkingDir") or "", str, "WorkingDir") or None
    spec.user = _check(config.get("User") or "", str, "User") or None
    spec.hostname = _check(config.get("Hostname") or "", str, "Hostname") or None
    spec.tty = bool(config.get("Tty"))
    spec.stdin_open = bool(config.get("OpenStdin"))
    spec.stop_signal = config.get("StopSignal") or None
    if config.get("StopTimeout") is not None:
        spec.stop_timeout = float(_check(config["StopTimeout"], int, "StopTimeout"))
    spec.mem_limit = _limit(host.get("Memory"), "HostConfig.Memory")
    nano = _limit(host.get("NanoCpus"), "HostConfig.NanoCpus")
    quota, period = host.get("CpuQuota"), host.get("CpuPeriod")
    if nano:
        spec.cpus = nano / 1e9
    elif quota and quota > 0:
        spec.cpus = _check(quota, int, "HostConfig.CpuQuota") / (period or 100000)
    spec.cpu_shares = _limit(host.get("CpuShares"), "HostConfig.CpuShares")
    pids = host.get("PidsLimit")
    spec.pids_limit = _limit(pids, "HostConfig.PidsLimit") if pids and pids > 0 else None
    spec.auto_remove = bool(host.get("AutoRemove"))
    spec.security_opt = _strings(host.get("SecurityOpt"), "HostConfig.SecurityOpt") or []
    for item in host.get("Ulimits") or []:
        item = _check(item, dict, "HostConfig.Ulimits entry")
        ulimit_name, limits = dockerargs.parse_ulimit(
            f"{item.get('Name')}={item.get('Soft')}:{item.get('Hard')}")
        spec.ulimits[ulimit_name] = limits
    # the simple options, one row each (Privileged, CapAdd, Dns, ShmSize, ...)
    for field_name, value in run_options_table.from_create(
            {"Config": config, "HostConfig": host}).items():
        setattr(spec, field_name, value)
    spec.mounts = _mounts(host)
    spec.ports = _ports(host, _mapping(config.get("ExposedPorts"), "ExposedPorts"),
                        default_ip)
    spec.network_mode, spec.networks = _networks(host, networking)
    return spec


def _mounts(host: dict) -> list[MountSpec]:
    mounts = [dockerargs.parse_volume(b, Path("/"))
              for b in _strings(host.get("Binds"), "HostConfig.Binds") or []]
    for path, options in _mapping(host.get("Tmpfs"), "HostConfig.Tmpfs").items():
        mounts.append(dockerargs.parse_tmpfs(f"{path}:{options}" if options else path))
    for item in host.get("Mounts") or []:
        item = _check(item, dict, "HostConfig.Mounts entry")
        fields = {"type": item.get("Type") or "volume", "target": item.get("Target"),
                  "source": item.get("Source") or "", "read_only": bool(item.get("ReadOnly"))}
        size = (item.get("TmpfsOptions") or {}).get("SizeBytes")
        if size:
            fields["size"] = size
        mounts.append(dockerargs.parse_mount(fields, Path("/")))
    return mounts


def _ports(host: dict, exposed: dict, default_ip: str) -> list[PortSpec]:
    ports: list[PortSpec] = []
    bindings = _mapping(host.get("PortBindings"), "HostConfig.PortBindings")
    for key, entries in bindings.items():
        container = dockerargs.parse_port(key)
        for entry in entries or [{}]:
            entry = _check(entry, dict, f"HostConfig.PortBindings[{key!r}] entry")
            host_port = str(entry.get("HostPort") or "0")
            if not host_port.isdigit() or int(host_port) > 65535:
                raise ApiError(400, f"invalid HostPort {host_port!r} for {key}")
            ports.append(PortSpec(container.container_port, container.protocol,
                                  entry.get("HostIp") or default_ip, int(host_port)))
    if host.get("PublishAllPorts"):
        bound = {p.key for p in ports}
        for key in exposed:
            port = dockerargs.parse_port(key)
            if port.key not in bound:
                ports.append(PortSpec(port.container_port, port.protocol, default_ip, 0))
    return ports


def _networks(host: dict, networking: dict) -> tuple[str, list[NetworkAttachment]]:
    mode = host.get("NetworkMode") or "bridge"
    if mode == "default":
        mode = "bridge"
    endpoints = _mapping(networking.get("EndpointsConfig"), "NetworkingConfig.EndpointsConfig")
    names: dict[str, list[str]] = {}
    for net, endpoint in endpoints.items():
        aliases = _strings((endpoint or {}).get("Aliases"), f"EndpointsConfig[{net!r}].Aliases")
        names["bridge" if net == "default" else net] = aliases or []
    if not names:
        names = {mode: []}
    elif mode not in names and mode not in dockerargs.BUILTIN_NETWORK_MODES:
        names = {mode: [], **names}
    if "bridge" in names and len(names) > 1:
        names.pop("bridge")
    return dockerargs.network_choice(names)


def update_changes(body: dict) -> dict:
    """`POST /containers/{id}/update`'s body to the engine's `update` keywords: only what
    the body sets (0 leaves a limit as it is, as dockerd); a PidsLimit of -1 removes it."""
    changes: dict = {}
    if body.get("Memory"):
        changes["mem_limit"] = _limit(body["Memory"], "Memory")
    nano, quota = body.get("NanoCpus"), body.get("CpuQuota")
    if nano:
        changes["cpus"] = _limit(nano, "NanoCpus") / 1e9
    elif quota and quota > 0:
        changes["cpus"] = _check(quota, int, "CpuQuota") / (body.get("CpuPeriod") or 100000)
    if body.get("CpuShares"):
        changes["cpu_shares"] = _limit(body["CpuShares"], "CpuShares")
    pids = body.get("PidsLimit")
    if pids is not None and pids != 0:
        _check(pids, int, "PidsLimit")
        changes["pids_limit"] = None if pids < 0 else _limit(pids, "PidsLimit")
    policy = body.get("RestartPolicy")
    if policy and policy.get("Name") is not None:
        _check(policy, dict, "RestartPolicy")
        name = policy.get("Name") or "no"
        if name not in ("no", "always", "on-failure", "unless-stopped"):
            raise ApiError(400, f"invalid RestartPolicy.Name {name!r}")
        retries = _check(policy.get("MaximumRetryCount") or 0, int, "MaximumRetryCount")
        changes["restart"] = RestartPolicy(name, retries)
    swap = body.get("MemorySwap")
    if swap not in (None, 0, -1) and swap != body.get("Memory"):
        raise ApiError(400, f"update of MemorySwap to {swap!r} is not supported: swap is "
                            "held to the memory limit")
    for key in ("BlkioWeight", "CpusetCpus", "CpusetMems", "MemoryReservation",
                "KernelMemory"):
        if body.get(key) not in (None, 0, ""):
            raise ApiError(400, f"update of {key} is not supported")
    return changes
