"""The JSON documents Docker's API returns, made from what the engine reports: container
list entries and inspect documents (the engine's fields completed with Docker's defaults,
which clients such as docker-py read without checking), images, networks, volumes."""

from __future__ import annotations

import copy
import time
from datetime import datetime
from typing import Any

from pytest_isobox.engine import ContainerState, ImageInfo, NetworkAttachment, NetworkInfo

_INSPECT_DEFAULTS: dict[str, Any] = {
    "Id": "", "Created": "", "Path": "", "Args": [], "Image": "", "Name": "",
    "RestartCount": 0, "Driver": "overlay2", "Platform": "linux", "MountLabel": "",
    "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None, "ResolvConfPath": "",
    "HostnamePath": "", "HostsPath": "", "LogPath": "",
    "State": {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
              "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
              "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"},
    "Config": {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
               "AttachStdout": False, "AttachStderr": False, "ExposedPorts": None,
               "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": [], "Cmd": None,
               "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
               "OnBuild": None, "Labels": {}},
    "HostConfig": {"Binds": None, "ContainerIDFile": "",
                   "LogConfig": {"Type": "json-file", "Config": {}}, "NetworkMode": "bridge",
                   "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                   "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None,
                   "CapAdd": None, "CapDrop": None, "Dns": [], "DnsOptions": [],
                   "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private",
                   "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
                   "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False,
                   "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864,
                   "Runtime": "runc", "Isolation": "", "CpuShares": 0, "Memory": 0,
                   "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "CpuPeriod": 0,
                   "CpuQuota": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
                   "MemoryReservation": 0, "MemorySwap": 0, "OomKillDisable": False,
                   "PidsLimit": None, "Ulimits": None, "Init": False, "ConsoleSize": [0, 0]},
    "GraphDriver": {"Name": "overlay2", "Data": {}},
    "Mounts": [],
    "NetworkSettings": {"Bridge": "", "SandboxID": "", "HairpinMode": False,
                        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
                        "SandboxKey": "", "SecondaryIPAddresses": None,
                        "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "",
                        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
                        "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": {}},
}

_ENDPOINT_DEFAULTS = {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "",
                      "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                      "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                      "MacAddress": "", "DriverOpts": None}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and out[key]:
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def container_inspect(engine_doc: dict) -> dict:
    """Docker's inspect document: the engine's, Docker's defaults for what it leaves out."""
    doc = _merge(_INSPECT_DEFAULTS, {k: v for k, v in engine_doc.items() if k != "Isobox"})
    settings = doc["NetworkSettings"]
    settings["Networks"] = {name: _merge(_ENDPOINT_DEFAULTS, ep or {})
                            for name, ep in settings["Networks"].items()}
    first = next(iter(settings["Networks"].values()), None)
    if first and not settings["IPAddress"]:
        settings["IPAddress"] = first.get("IPAddress", "")
    exposed = {key: {} for key in settings.get("Ports") or {}}
    if exposed and not doc["Config"].get("ExposedPorts"):
        doc["Config"]["ExposedPorts"] = exposed
    return doc


def complete_endpoints(doc: dict, attachments: list[NetworkAttachment]) -> None:
    """The endpoints of the networks named at create, as dockerd shows them before API 1.45:
    there from create on (not only once running) and with the short id among the aliases on
    user-defined networks. docker-compose 1.29 reads them: an endpoint without the short id
    makes it disconnect and reconnect the container to set its aliases."""
    networks = doc["NetworkSettings"]["Networks"]
    short = doc["Id"][:12]
    for attachment in attachments:
        endpoint = networks.get(attachment.network)
        if endpoint is None:
            if doc["State"].get("Running"):
                continue
            endpoint = networks[attachment.network] = copy.deepcopy(_ENDPOINT_DEFAULTS)
        aliases = list(endpoint.get("Aliases") or attachment.aliases)
        if short not in aliases:
            aliases.append(short)
        endpoint["Aliases"] = aliases


def _status_text(st: ContainerState, now: float) -> str:
    if st.status in ("running", "paused"):
        paused = " (Paused)" if st.status == "paused" else ""
        return f"Up {_ago(now - (st.started_at or now))}{paused}"
    if st.status == "created":
        return "Created"
    if st.status == "dead":
        return "Dead"
    return f"Exited ({st.exit_code or 0}) {_ago(now - (st.finished_at or now))} ago"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "Less than a second" if seconds < 1 else f"{seconds} seconds"
    if seconds < 3600:
        return f"{seconds // 60} minutes"
    return f"{seconds // 3600} hours"


def container_summary(st: ContainerState, inspect: dict | None) -> dict:
    """One entry of `GET /containers/json`."""
    config = (inspect or {}).get("Config") or {}
    cmd = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    ports = []
    for key, bindings in st.ports.items():
        port, _, proto = key.partition("/")
        for host_ip, host_port in bindings:
            ports.append({"IP": host_ip, "PrivatePort": int(port), "PublicPort": host_port,
                          "Type": proto or "tcp"})
    host = (inspect or {}).get("HostConfig") or {}
    return {
        "Id": st.id, "Names": ["/" + st.name], "Image": st.image, "ImageID": st.image_id,
        "Command": " ".join(cmd), "Created": int(st.created_at or 0), "Ports": ports,
        "Labels": st.labels, "State": st.status, "Status": _status_text(st, time.time()),
        "HostConfig": {"NetworkMode": host.get("NetworkMode", "bridge")},
        "NetworkSettings": {"Networks": _summary_networks(st, inspect)},
        "Mounts": (inspect or {}).get("Mounts") or [],
    }


def _summary_networks(st: ContainerState, inspect: dict | None) -> dict:
    """The inspect document's endpoints (gateway included: testcontainers connects to it
    when it runs inside a container), else the state's addresses."""
    networks = ((inspect or {}).get("NetworkSettings") or {}).get("Networks")
    if networks:
        return copy.deepcopy(networks)
    return {name: {**_ENDPOINT_DEFAULTS, "IPAddress": ip} for name, ip in st.ips.items()}


def _created_seconds(created: str | None) -> int:
    if not created:
        return 0
    try:
        return int(datetime.fromisoformat(created).timestamp())
    except ValueError:
        return 0


def image_summary(image: ImageInfo) -> dict:
    """One entry of `GET /images/json`."""
    labels = (image.config.get("config") or {}).get("Labels") or {}
    return {"Id": image.id, "ParentId": "", "RepoTags": list(image.tags), "RepoDigests": [],
            "Created": _created_seconds(image.created), "Size": image.size,
            "VirtualSize": image.size, "SharedSize": -1, "Labels": labels, "Containers": -1}


def image_inspect(image: ImageInfo) -> dict:
    """`GET /images/{name}/json`: Docker's document from the OCI config."""
    oci = image.config
    config = dict(oci.get("config") or {})
    config.setdefault("Env", None)
    config.setdefault("Cmd", None)
    config.setdefault("Labels", None)
    rootfs = oci.get("rootfs") or {"type": "layers", "diff_ids": []}
    return {
        "Id": image.id, "RepoTags": list(image.tags), "RepoDigests": [], "Parent": "",
        "Comment": "", "Created": image.created or "0001-01-01T00:00:00Z",
        "Container": "", "ContainerConfig": {}, "DockerVersion": "",
        "Author": oci.get("author", ""), "Config": config,
        "Architecture": oci.get("architecture", "amd64"), "Os": oci.get("os", "linux"),
        "Size": image.size, "VirtualSize": image.size,
        "GraphDriver": {"Name": "overlay2", "Data": {}},
        "RootFS": {"Type": rootfs.get("type", "layers"), "Layers": rootfs.get("diff_ids", [])},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def network_document(net: NetworkInfo) -> dict:
    """`GET /networks/{id}` and the entries of `GET /networks`."""
    ipam = [{"Subnet": net.subnet, **({"Gateway": net.gateway} if net.gateway else {})}] \
        if net.subnet else []
    return {
        "Name": net.name, "Id": net.id, "Created": "0001-01-01T00:00:00Z", "Scope": "local",
        "Driver": net.driver, "EnableIPv6": False, "Internal": False, "Attachable": False,
        "Ingress": False, "IPAM": {"Driver": "default", "Options": {}, "Config": ipam},
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Options": {},
        "Labels": dict(net.labels),
        "Containers": {cid: {"Name": "", "EndpointID": "", "MacAddress": "",
                             "IPv4Address": ip, "IPv6Address": ""}
                       for cid, ip in net.containers.items()},
    }


def volume_document(name: str, home: str | None) -> dict:
    mountpoint = f"{home}/volumes/{name}" if home else ""
    return {"Name": name, "Driver": "local", "Mountpoint": mountpoint, "Labels": {},
            "Scope": "local", "Options": {}}
