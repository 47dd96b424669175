"""Translation between our container values and Docker's documents.

`create_body` maps a `ContainerSpec` onto POST /containers/create (Docker's own meaning for
every field, published ports on 127.0.0.1 unless asked, or the remote daemon's address); `state_from_inspect` reads a
container's inspect document back into a `ContainerState`.
"""

from __future__ import annotations

import re
from datetime import datetime

from pytest_isobox.dockerargs import publish_all_ports
from pytest_isobox.engine import (
    ContainerSpec,
    ContainerState,
    HealthcheckSpec,
    InvalidSpec,
    MountSpec,
    NetworkAttachment,
    PortSpec,
)

_BUILTIN_NETWORK_MODES = ("bridge", "none", "host", "default")


def attachments(spec: ContainerSpec) -> list[NetworkAttachment]:
    """The named networks the container joins, first one at create, the rest connected after."""
    if spec.networks:
        return list(spec.networks)
    if spec.network_mode in _BUILTIN_NETWORK_MODES or spec.network_mode.startswith("container:"):
        return []
    return [NetworkAttachment(spec.network_mode)]


AUTO_REMOVE_LABEL = "io.isobox.auto-remove"


def docker_removes(spec: ContainerSpec) -> bool:
    """Whether Docker itself removes the container on exit (AutoRemove).

    Only for persistent containers (`run -d --rm`): a non-persistent auto_remove container
    is removed by `wait`, once its exit code and logs have been read, as the native engine
    does; it carries AUTO_REMOVE_LABEL so that any engine's `wait` knows.
    """
    return spec.auto_remove and spec.persistent


def create_body(spec: ContainerSpec, labels: dict[str, str],
                publish_ip: str | None = None, image_exposed: list[str] | None = None) -> dict:
    """The body of POST /containers/create for `spec`, with `labels` added to the spec's.

    `publish_ip` replaces the loopback default of published ports: a remote daemon's
    loopback is not reachable from here. With -P (publish_all), `image_exposed` is the
    image's ExposedPorts: each gets an explicit loopback binding, and Docker's own
    PublishAllPorts stays off (it would add 0.0.0.0 and :: bindings beside ours).
    """
    from pytest_isobox import run_options_table  # (read-only verbs never create)

    nets = attachments(spec)
    exposed = list(dict.fromkeys([*(image_exposed or ()), *spec.expose]))
    ports = publish_all_ports(exposed, spec.ports) if spec.publish_all else spec.ports
    host_config: dict = {
        "NetworkMode": nets[0].network if nets else spec.network_mode,
        "AutoRemove": docker_removes(spec),
        "PortBindings": _port_bindings(ports, publish_ip),
        "Mounts": [_mount(m) for m in spec.mounts],
    }
    _security(host_config, spec)
    fields = run_options_table.create_fields(spec)  # the simple options, one row each
    host_config.update(fields["HostConfig"])
    _set_if(host_config, "Memory", spec.mem_limit)
    _set_if(host_config, "NanoCpus", None if spec.cpus is None else int(spec.cpus * 1e9))
    _set_if(host_config, "CpuShares", spec.cpu_shares)
    _set_if(host_config, "PidsLimit", spec.pids_limit)
    if spec.security_opt:
        host_config["SecurityOpt"] = [_security_opt(o) for o in spec.security_opt]
    if spec.ulimits:
        host_config["Ulimits"] = [{"Name": name, "Soft": soft, "Hard": hard}
                                  for name, (soft, hard) in spec.ulimits.items()]
    body: dict = {
        "Image": spec.image,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "Labels": {**spec.labels, **labels,
                   **({AUTO_REMOVE_LABEL: "1"} if spec.auto_remove and not spec.persistent
                      else {})},
        "Tty": spec.tty,
        "OpenStdin": spec.stdin_open,
        "StdinOnce": spec.stdin_open,
        "AttachStdin": spec.stdin_open,
        "AttachStdout": True,
        "AttachStderr": True,
        "ExposedPorts": {key: {} for key in [*exposed, *(p.key for p in ports)]},
        "StopTimeout": int(spec.stop_timeout),
        "HostConfig": host_config,
        **fields["Config"],
    }
    _set_if(body, "Cmd", spec.command)
    _set_if(body, "Entrypoint", spec.entrypoint)  # [] clears the image's entrypoint
    _set_if(body, "WorkingDir", spec.working_dir)
    _set_if(body, "User", spec.user)
    _set_if(body, "Hostname", spec.hostname)
    _set_if(body, "StopSignal", spec.stop_signal)
    if spec.healthcheck is not None:
        body["Healthcheck"] = _healthcheck(spec.healthcheck)
    if nets:
        first = nets[0]
        endpoint: dict = {"Aliases": list(first.aliases)}
        if first.ip or spec.ip:
            endpoint["IPAMConfig"] = {"IPv4Address": first.ip or spec.ip}
        body["NetworkingConfig"] = {"EndpointsConfig": {first.network: endpoint}}
    return body


def _security(host_config: dict, spec: ContainerSpec) -> None:
    """Devices, sysctls and the restart policy."""
    if spec.devices:
        host_config["Devices"] = [{"PathOnHost": d.host_path, "PathInContainer":
                                   d.container_path, "CgroupPermissions": d.permissions}
                                  for d in spec.devices]
    if spec.sysctls:
        host_config["Sysctls"] = dict(spec.sysctls)
    if spec.restart is not None:
        host_config["RestartPolicy"] = {"Name": spec.restart.name,
                                        "MaximumRetryCount": spec.restart.maximum_retry}


def _healthcheck(health: HealthcheckSpec) -> dict:
    """Docker's Config.Healthcheck: times in nanoseconds, 0 for the daemon's defaults."""
    return {"Test": list(health.test) or None, "Interval": int(health.interval * 1e9),
            "Timeout": int(health.timeout * 1e9), "Retries": health.retries,
            "StartPeriod": int(health.start_period * 1e9)}


def _set_if(doc: dict, key: str, value: object) -> None:
    if value is not None:
        doc[key] = value


def _port_bindings(ports: list[PortSpec],
                   publish_ip: str | None) -> dict[str, list[dict[str, str]]]:
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in ports:
        host_ip = port.host_ip
        if publish_ip is not None and host_ip == "127.0.0.1":
            host_ip = publish_ip
        bindings.setdefault(port.key, []).append({
            "HostIp": host_ip,
            "HostPort": str(port.host_port) if port.host_port else "",
        })
    return bindings


def _mount(mount: MountSpec) -> dict:
    doc: dict = {"Type": mount.type, "Target": mount.target, "ReadOnly": mount.read_only}
    if mount.type != "tmpfs":
        doc["Source"] = mount.source
    if mount.type == "tmpfs" and mount.size is not None:
        doc["TmpfsOptions"] = {"SizeBytes": mount.size}
    return doc


# --------------------------------------------------------------------------- inspect -> state

_RFC3339 = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?(?P<tz>Z|[+-]\d{2}:\d{2})"
)


def parse_time(text: str | None) -> float | None:
    """Docker's RFC 3339 times (nanoseconds, `Z` or an offset) to epoch seconds; zero is None."""
    if not text or text.startswith("0001-01-01"):
        return None
    m = _RFC3339.fullmatch(text)
    if not m:
        return None
    tz = "+00:00" if m["tz"] == "Z" else m["tz"]
    seconds = datetime.fromisoformat(m["base"] + tz).timestamp()
    return seconds + (float("0." + m["frac"]) if m["frac"] else 0.0)


_ANY_OR_LOOPBACK = ("", "0.0.0.0", "::", "127.0.0.1", "::1")


def state_from_inspect(doc: dict, published_host: str | None = None) -> ContainerState:
    """A `ContainerState` from GET /containers/{id}/json.

    With `published_host` (a remote daemon's host), ports bound to any or loopback address
    are given as that host: where a test on this machine reaches them.
    """
    state = doc.get("State") or {}
    settings = doc.get("NetworkSettings") or {}
    config = doc.get("Config") or {}
    status = state.get("Status", "")
    finished = status in ("exited", "dead")
    return ContainerState(
        id=doc["Id"],
        name=doc.get("Name", "").lstrip("/"),
        image=config.get("Image", ""),
        image_id=doc.get("Image", ""),
        status=status,
        pid=state.get("Pid") or None,
        exit_code=state.get("ExitCode") if finished else None,
        oom_killed=bool(state.get("OOMKilled")),
        created_at=parse_time(doc.get("Created")),
        started_at=parse_time(state.get("StartedAt")),
        finished_at=parse_time(state.get("FinishedAt")),
        ips={name: net["IPAddress"] for name, net in (settings.get("Networks") or {}).items()
             if net.get("IPAddress")},
        ports={key: [(_reachable(b["HostIp"], published_host), int(b["HostPort"]))
                     for b in bindings]
               for key, bindings in (settings.get("Ports") or {}).items() if bindings},
        labels=dict(config.get("Labels") or {}),
        command=[doc["Path"], *(doc.get("Args") or [])] if doc.get("Path") else [],
        health=(state.get("Health") or {}).get("Status"),
    )


def _reachable(host_ip: str, published_host: str | None) -> str:
    if published_host is not None and host_ip in _ANY_OR_LOOPBACK:
        return published_host
    return host_ip


def _security_opt(option: str) -> str:
    """dockerd takes a seccomp profile as its JSON text: read a profile file, as docker's CLI
    does (unconfined, builtin and inline JSON pass as they are)."""
    key, sep, value = option.partition("=")
    if key != "seccomp" or not sep or value in ("unconfined", "builtin") \
            or value.lstrip().startswith("{"):
        return option
    try:
        with open(value) as f:
            return f"seccomp={f.read()}"
    except OSError as exc:
        raise InvalidSpec(f"opening seccomp profile ({value}) failed: {exc.strerror}") from None
