"""Docker's container JSON (`docker inspect`) for a native container, from its state dir.

What only this engine knows (its config.json and state.json, the network's gateway, the
container's MAC seen through its own sysfs) is read here; the shapes shared with other engines
come from engine/documents.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pytest_isobox.engine import documents as docs

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: the read-only reader loads neither pathlib nor specs)
    from pathlib import Path

    from pytest_isobox.engine import ContainerState, NetworkInfo

_MOUNT_TYPES = {"bind", "volume", "tmpfs", "image", "npipe", "cluster"}
_HOST_CONFIG_ORDER = ("Binds", "NetworkMode", "PortBindings", "RestartPolicy", "AutoRemove",
                      "Privileged", "ReadonlyRootfs", "SecurityOpt", "Init", "Memory",
                      "NanoCpus", "CpuShares", "PidsLimit", "Ulimits", "Tmpfs")


def container_json(cid: str, config: dict, raw: dict, st: ContainerState, *,
                   cdir: Path | str | None = None, networks: Mapping[str, NetworkInfo] | None = None,
                   size: Mapping[str, int] | None = None) -> dict:
    """The fields of Docker's document: Id, Name, State (with Health when there is any),
    Config, HostConfig, Mounts, NetworkSettings (`networks`: the ones it is on, for their
    gateways and prefixes); `size` adds SizeRw/SizeRootFs (-s)."""
    spec = config["spec"]
    image_config = config.get("image_config") or {}
    doc = {
        "Id": cid, "Created": docs.iso_time(config["created"]),
        "Path": config["argv"][0] if config["argv"] else "", "Args": config["argv"][1:],
        "State": _state(st, raw),
        "Image": config["image_id"],
        "ResolvConfPath": os.path.join(cdir, "resolv.conf") if cdir else "",
        "HostnamePath": os.path.join(cdir, "hostname") if cdir else "",
        "HostsPath": os.path.join(cdir, "hosts") if cdir else "",
        "LogPath": os.path.join(cdir, "log") if cdir else "",
        "Name": "/" + st.name,
        "RestartCount": int(raw.get("restart_count") or 0),
        "Driver": "overlay", "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "ExecIDs": None,
        "HostConfig": _host_config(spec),
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(config.get("lowerdirs") or []),
            **({"UpperDir": os.path.join(cdir, "upper"), "WorkDir": os.path.join(cdir, "work")}
               if cdir else {}),
        }},
        "Mounts": [_mount(m) for m in spec["mounts"]],
        "Config": _config(config, spec, image_config),
        "NetworkSettings": _network_settings(spec, st, networks or {}),
    }
    if size is not None:
        doc["SizeRw"], doc["SizeRootFs"] = int(size.get("rw", 0)), int(size.get("root_fs", 0))
    return doc


def _state(st: ContainerState, raw: dict) -> dict:
    state = {
        "Status": st.status, "Running": st.status in ("running", "paused"),
        "Paused": st.status == "paused",
        "Restarting": st.status == "restarting", "OOMKilled": st.oom_killed,
        "Dead": st.status == "dead", "Pid": st.pid or 0, "ExitCode": st.exit_code or 0,
        "Error": raw.get("error") or raw.get("keeper_error", ""),  # a restart that failed too
        "StartedAt": docs.iso_time(st.started_at), "FinishedAt": docs.iso_time(st.finished_at),
    }
    health = raw.get("health")
    if isinstance(health, Mapping) and health.get("Status"):
        state["Health"] = {"Status": health["Status"],
                           "FailingStreak": int(health.get("FailingStreak") or 0),
                           "Log": list(health.get("Log") or [])}
    return state


def _config(config: dict, spec: dict, image_config: dict) -> dict:
    env = [f"{k}={v}" for k, v in config["env"].items()]
    ports = {f"{p['container_port']}/{p['protocol']}": {} for p in spec.get("ports") or []}
    ports.update(image_config.get("ExposedPorts") or {})
    ports.update({key: {} for key in spec.get("expose") or []})  # --expose, as Docker lists it
    overrides: dict = {
        "Hostname": config["hostname"], "User": config["user"], "Env": env,
        "Cmd": spec["command"] if spec["command"] is not None else image_config.get("Cmd"),
        "Entrypoint": spec["entrypoint"] if spec["entrypoint"] is not None
        else image_config.get("Entrypoint"),
        "WorkingDir": config["workdir"], "Image": config["image"],
        "Labels": {**(image_config.get("Labels") or {}), **(spec["labels"] or {})},
        "Tty": spec["tty"], "OpenStdin": spec["stdin_open"], "StopSignal": config["stop_signal"],
        "ExposedPorts": ports or None,
    }
    health = spec.get("healthcheck") or image_config.get("Healthcheck")
    if health and "test" in health:  # a HealthcheckSpec as the spec keeps it (seconds)
        image = image_config.get("Healthcheck") or {}
        health = {"Test": list(health["test"]) or image.get("Test"),
                  "Interval": int(health["interval"] * 1e9),
                  "Timeout": int(health["timeout"] * 1e9),
                  "StartPeriod": int(health["start_period"] * 1e9), "Retries": health["retries"]}
    overrides["Healthcheck"] = docs.healthcheck(health)
    if spec.get("stop_timeout") is not None:
        overrides["StopTimeout"] = int(spec["stop_timeout"])
    from pytest_isobox import run_options_table

    overrides.update(run_options_table.inspect_fields("Config", spec))  # the simple options
    return docs.container_config(image_config, **overrides)


def _host_config(spec: dict) -> dict:
    from pytest_isobox import run_options_table  # (what `ps` loads never needs the table)

    restart = spec.get("restart") or {}
    if isinstance(restart, str):
        name, _, count = restart.partition(":")
        restart = {"Name": name, "MaximumRetryCount": int(count or 0)}
    elif "name" in restart:  # a RestartPolicy as the spec keeps it
        restart = {"Name": restart["name"], "MaximumRetryCount": restart["maximum_retry"]}
    binds = [f"{m['source']}:{m['target']}{':ro' if m['read_only'] else ''}"
             for m in spec["mounts"] if m["type"] in ("bind", "volume")]
    fields = {
        "Binds": binds or None,
        "NetworkMode": spec["network_mode"],
        "PortBindings": _port_bindings(spec.get("ports") or []),
        "RestartPolicy": {"Name": restart.get("Name") or "no",
                          "MaximumRetryCount": int(restart.get("MaximumRetryCount") or 0)},
        "AutoRemove": spec["auto_remove"],
        "SecurityOpt": list(spec.get("security_opt") or []) or None,
        "Memory": spec["mem_limit"] or 0,
        "NanoCpus": int((spec["cpus"] or 0) * 1e9),
        "CpuShares": spec["cpu_shares"] or 0,
        "PidsLimit": spec["pids_limit"],
        "Ulimits": [{"Name": n, "Soft": s, "Hard": h}
                    for n, (s, h) in (spec.get("ulimits") or {}).items()],
        "Tmpfs": {m["target"]: m.get("options") or "" for m in spec["mounts"]
                  if m["type"] == "tmpfs"} or None,
        **run_options_table.inspect_fields("HostConfig", spec),  # the simple options
    }
    return _in_order(fields, _HOST_CONFIG_ORDER)


def _in_order(fields: dict, order: tuple[str, ...]) -> dict:
    """`fields` with the keys of `order` first, in that order, then the others as they come:
    a document's fields stay where they were when a table row adds one."""
    return {**{k: fields[k] for k in order if k in fields},
            **{k: v for k, v in fields.items() if k not in order}}


def _port_bindings(ports: list[dict]) -> dict:
    out: dict[str, list] = {}
    for p in ports:
        out.setdefault(f"{p['container_port']}/{p['protocol']}", []).append({
            "HostIp": p.get("host_ip") or "",
            "HostPort": str(p["host_port"]) if p.get("host_port") else ""})
    return out


def _mount(m: dict) -> dict:
    kind = m["type"] if m["type"] in _MOUNT_TYPES else "bind"
    return {"Type": kind, "Name": m["source"] if kind == "volume" else "",
            "Source": m["source"] if kind != "tmpfs" else "", "Destination": m["target"],
            "Driver": "local" if kind == "volume" else "", "Mode": "ro" if m["read_only"] else "",
            "RW": not m["read_only"], "Propagation": "rprivate" if kind == "bind" else ""}


def _network_settings(spec: dict, st: ContainerState,
                      infos: Mapping[str, NetworkInfo]) -> dict:
    aliases = {n["network"]: list(n.get("aliases") or []) for n in spec.get("networks") or []}
    first_mac = _mac_address(st)
    networks = {}
    for index, (name, ip) in enumerate(st.ips.items()):
        address, _, prefix = ip.partition("/")
        info = infos.get(name)
        if not prefix and info is not None and info.subnet and "/" in info.subnet:
            prefix = info.subnet.rsplit("/", 1)[1]
        mac = first_mac if index == 0 else _mac_of(address) if first_mac else ""
        networks[name] = {
            "IPAMConfig": None, "Links": None, "Aliases": aliases.get(name) or None,
            "MacAddress": mac, "NetworkID": info.id if info else "", "EndpointID": "",
            "Gateway": (info.gateway or "") if info else "", "IPAddress": address,
            "IPPrefixLen": int(prefix) if prefix else 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "DNSNames": [st.name, st.id[:12], *(aliases.get(name) or [])],
        }
    first = next(iter(networks.values()), {})
    return {
        "SandboxID": st.id if st.pid else "", "SandboxKey": f"/proc/{st.pid}/ns/net"
        if st.pid else "",
        "Ports": docs.port_map(st.ports),
        # the fields Docker kept at the top until API 1.44: scripts still read them
        "IPAddress": first.get("IPAddress", ""), "Gateway": first.get("Gateway", ""),
        "MacAddress": first.get("MacAddress", ""), "IPPrefixLen": first.get("IPPrefixLen", 0),
        "Networks": networks,
    }


def _mac_of(address: str) -> str:
    """The MAC the native engine gives an address (network/ipam.mac_for: 02:42 and its four
    bytes, Docker's scheme), for the networks after the first."""
    try:
        return "02:42:" + ":".join(f"{int(b):02x}" for b in address.split("."))
    except ValueError:
        return ""


def _mac_address(st: ContainerState) -> str:
    """eth0's MAC as the container sees it: its own /sys belongs to its network namespace."""
    if not st.running or not st.pid or not st.ips:
        return ""
    try:
        with open(f"/proc/{st.pid}/root/sys/class/net/eth0/address") as f:
            return f.read().strip()
    except OSError:
        return ""
