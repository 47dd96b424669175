"""Docker's inspect documents, the parts every engine shapes the same way.

Scripts read `docker inspect` by Docker's field names (`State.Health`, `NetworkSettings.Ports`,
`RootFS.Layers`, ...), so an engine that is not a Docker daemon writes the same documents. What
is engine-specific (where a container's state lives) stays in the engine; the shapes here are
built from the seam's own types (ImageInfo, NetworkInfo) and plain values, and match moby's
api/swagger.yaml (tests/cli/test_inspect_documents.py checks them against it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pytest_isobox.engine.records import ImageInfo, NetworkInfo

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time, Docker's "never"


def iso_time(ts: float | None) -> str:
    """A Unix time as Docker writes it (RFC 3339, UTC, nanosecond-free); never is Go's zero."""
    if not ts:
        return ZERO_TIME
    from datetime import UTC, datetime  # (1 ms: `image inspect` writes no time but never)

    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> float | None:
    """Docker's (or an OCI config's) RFC 3339 time as a Unix time; None for never or junk."""
    if not text or text.startswith("0001-01-01"):
        return None
    from datetime import datetime

    clean = text.replace("Z", "+00:00")
    if "." in clean:  # Go writes up to nine fractional digits; Python reads six
        head, _, rest = clean.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        clean = f"{head}.{digits[:6]}{rest[len(digits):]}"
    try:
        return datetime.fromisoformat(clean).timestamp()
    except ValueError:
        return None


def port_map(ports: Mapping[str, Iterable[tuple[str, int]]]) -> dict:
    """NetworkSettings.Ports: "80/tcp" -> [{"HostIp", "HostPort"}] (a string, as Docker's)."""
    return {key: [{"HostIp": host, "HostPort": str(port)} for host, port in binds]
            for key, binds in ports.items()}


def healthcheck(test: object) -> dict | None:
    """Config.Healthcheck from an OCI/Docker image config's Healthcheck (nanosecond times)."""
    if not isinstance(test, Mapping) or not test.get("Test"):
        return None
    return {k: test[k] for k in ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval",
                                 "Retries") if k in test}


def container_config(oci: Mapping, **overrides: object) -> dict:
    """Docker's ContainerConfig (an image's or a container's Config) from an OCI config's
    `config` object; `overrides` set what a container changed."""
    doc = {
        "Hostname": "", "Domainname": "", "User": oci.get("User", ""),
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "ExposedPorts": dict(oci.get("ExposedPorts") or {}) or None,
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": list(oci.get("Env") or []), "Cmd": oci.get("Cmd"),
        "Healthcheck": healthcheck(oci.get("Healthcheck")),
        "Image": "", "Volumes": dict(oci.get("Volumes") or {}) or None,
        "WorkingDir": oci.get("WorkingDir", ""), "Entrypoint": oci.get("Entrypoint"),
        "OnBuild": oci.get("OnBuild"), "Labels": dict(oci.get("Labels") or {}),
        "StopSignal": oci.get("StopSignal"),
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def image_document(info: ImageInfo, *, repo_digests: Iterable[str] = (),
                   last_tag_time: float | None = None) -> dict:
    """Docker's image inspect document from an image's OCI config (`info.config`)."""
    config = info.config
    created = config.get("created") or info.created
    return {
        "Id": info.id,
        "RepoTags": list(info.tags),
        "RepoDigests": list(repo_digests),
        "Parent": "",
        "Comment": _last_comment(config),
        "Created": created or ZERO_TIME,
        "DockerVersion": "",
        "Author": config.get("author", ""),
        "Config": container_config(config.get("config") or {}),
        "Architecture": config.get("architecture", ""),
        **({"Variant": config["variant"]} if config.get("variant") else {}),
        "Os": config.get("os", ""),
        "Size": int(info.size),
        "GraphDriver": {"Name": "overlay", "Data": {}},
        "RootFS": {"Type": "layers",
                   "Layers": list((config.get("rootfs") or {}).get("diff_ids") or [])},
        "Metadata": {"LastTagTime": iso_time(last_tag_time)},
    }


def _last_comment(config: Mapping) -> str:
    history = config.get("history") or []
    return (history[-1].get("comment") or "") if history else ""


def image_history(info: ImageInfo) -> list[dict]:
    """`docker image history`'s rows (the API's HistoryResponseItem), newest first: one per
    history entry of the OCI config; the image's own id on the newest, `<missing>` below."""
    history = list(info.config.get("history") or [])
    rows = []
    for i, entry in enumerate(reversed(history)):
        rows.append({
            "Id": info.id if i == 0 else "<missing>",
            "Created": int(parse_time(entry.get("created")) or 0),
            "CreatedBy": entry.get("created_by", ""),
            "Tags": list(info.tags) if i == 0 else [],
            "Size": 0,
            "Comment": entry.get("comment", ""),
        })
    return rows


def network_document(info: NetworkInfo, *, created: float | None = None, internal: bool = False,
                     container_names: Mapping[str, str] | None = None) -> dict:
    """Docker's network inspect document."""
    config = []
    if info.subnet:
        config = [{"Subnet": info.subnet, **({"Gateway": info.gateway} if info.gateway else {})}]
    prefix = info.subnet.rsplit("/", 1)[1] if info.subnet and "/" in info.subnet else "32"
    names = container_names or {}
    return {
        "Name": info.name, "Id": info.id, "Created": iso_time(created or info.created),
        "Scope": "local",
        "Driver": info.driver, "EnableIPv4": True, "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": internal or info.internal, "Attachable": False, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": {cid: {"Name": names.get(cid, ""), "EndpointID": "", "MacAddress": "",
                             "IPv4Address": f"{ip}/{prefix}" if ip else "", "IPv6Address": ""}
                       for cid, ip in info.containers.items()},
        "Options": {}, "Labels": dict(info.labels),
    }


def volume_document(name: str, mountpoint: str, *, created: float | None = None,
                    labels: Mapping[str, str] | None = None) -> dict:
    """Docker's volume inspect document (the local driver's)."""
    return {
        "CreatedAt": iso_time(created), "Driver": "local", "Labels": dict(labels or {}),
        "Mountpoint": mountpoint, "Name": name, "Options": {}, "Scope": "local",
    }


def _go_arch(machine: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _host_facts() -> dict:
    import os
    import platform
    from pathlib import Path

    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    system = "Linux"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    cgroup2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    return {"KernelVersion": platform.release(), "OperatingSystem": system, "OSType": "linux",
            "Architecture": platform.machine(), "NCPU": os.cpu_count() or 1,
            "MemTotal": memory, "Name": platform.node(),
            "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if cgroup2 else "1"}


def system_info(states: Iterable, *, images: int, server_version: str, root_dir: str,
                driver: str = "overlay", security: Iterable[str] = ()) -> dict:
    """Docker's `/info` document (`docker system info`) for an engine on this host."""
    states = list(states)
    paused = sum(1 for s in states if s.status == "paused")
    running = sum(1 for s in states if s.status == "running")
    return {
        "ID": "", "Containers": len(states), "ContainersRunning": running,
        "ContainersPaused": paused, "ContainersStopped": len(states) - running - paused,
        "Images": images, "Driver": driver, "DriverStatus": [],
        **_host_facts(), "ServerVersion": server_version, "DockerRootDir": root_dir,
        "SecurityOptions": list(security), "Warnings": [],
    }


def server_version(name: str, version: str) -> dict:
    """The Server half of Docker's `/version` document, for an engine that is not a daemon."""
    import platform

    return {"Platform": {"Name": name}, "Version": version, "ApiVersion": "",
            "MinAPIVersion": "", "Os": "linux", "Arch": _go_arch(platform.machine()),
            "KernelVersion": platform.release(), "Components": []}
