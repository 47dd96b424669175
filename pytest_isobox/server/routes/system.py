"""System endpoints: `_ping`, `version`, `info`, `system/df`, `auth`, `events`."""

from __future__ import annotations

import os
import platform
import select
import socket
import time

from pytest_isobox import _version
from pytest_isobox.server.context import ServerContext
from pytest_isobox.server.errors import ApiError
from pytest_isobox.server.filters import parse_filters
from pytest_isobox.server.http import Request
from pytest_isobox.server.routing import API_VERSION, MIN_API_VERSION, Router

router = Router()


def _ping_headers() -> dict[str, str]:
    return {"Api-Version": API_VERSION, "Docker-Experimental": "false", "Ostype": "linux",
            "Builder-Version": "1", "Cache-Control": "no-cache, no-store, must-revalidate",
            "Pragma": "no-cache", "Content-Type": "text/plain; charset=utf-8"}


@router.add("GET", "/_ping")
def ping(ctx: ServerContext, req: Request) -> None:
    req.reply_bytes(200, b"OK", _ping_headers())


@router.add("HEAD", "/_ping")
def ping_head(ctx: ServerContext, req: Request) -> None:
    req.reply_bytes(200, b"OK", _ping_headers(), head=True)


def _kernel() -> str:
    return platform.release()


@router.add("GET", "/version")
def version(ctx: ServerContext, req: Request) -> None:
    ours = _version.__version__ if hasattr(_version, "__version__") else "0"
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
               "GitCommit": "", "GoVersion": platform.python_version(), "Os": "linux",
               "Arch": _arch(), "KernelVersion": _kernel(), "BuildTime": ""}
    req.reply_json(200, {
        "Platform": {"Name": f"isobox {ours} ({ctx.engine.name} engine)"},
        "Components": [{"Name": "Engine", "Version": ours, "Details": details}],
        "Version": ours, **details,
    })


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@router.add("GET", "/info")
def info(ctx: ServerContext, req: Request) -> None:
    states = ctx.call(ctx.engine.containers, all=True)
    images = ctx.call(ctx.engine.images)
    running = sum(1 for s in states if s.running)
    stopped = sum(1 for s in states if s.status in ("exited", "dead"))
    cgroup_version = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    ours = getattr(_version, "__version__", "0")
    req.reply_json(200, {
        "ID": f"isobox-{socket.gethostname()}", "Containers": len(states),
        "ContainersRunning": running, "ContainersPaused": 0, "ContainersStopped": stopped,
        "Images": len(images), "Driver": "overlay2", "DriverStatus": [],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                    "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": False, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "CPUSet": False, "PidsLimit": True, "IPv4Forwarding": True,
        "BridgeNfIptables": True, "BridgeNfIp6tables": True, "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": False,
        "NGoroutines": 0, "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version, "NEventsListener": 0, "KernelVersion": _kernel(),
        "OperatingSystem": f"isobox ({ctx.engine.name} engine)", "OSVersion": "",
        "OSType": "linux", "Architecture": platform.machine(), "IndexServerAddress":
        "https://index.docker.io/v1/", "RegistryConfig": None, "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(), "GenericResources": None,
        "DockerRootDir": str(ctx.home or ""), "HttpProxy": "", "HttpsProxy": "",
        "NoProxy": "", "Name": socket.gethostname(), "Labels": [], "ExperimentalBuild": False,
        "ServerVersion": ours, "Runtimes": {"runc": {"path": "isobox"}},
        "DefaultRuntime": "runc", "Swarm": {"NodeID": "", "NodeAddr": "",
                                            "LocalNodeState": "inactive",
                                            "ControlAvailable": False, "Error": "",
                                            "RemoteManagers": None},
        "LiveRestoreEnabled": False, "Isolation": "", "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""}, "SecurityOptions": ["name=seccomp,profile=default"],
        "Warnings": None,
    })


@router.add("GET", "/system/df")
def disk_usage(ctx: ServerContext, req: Request) -> None:
    usage = ctx.call(ctx.engine.disk_usage)
    images = [{"Id": i.get("id"), "RepoTags": i.get("tags") or [], "Size": i.get("size", 0),
               "SharedSize": i.get("shared_size", 0), "Containers": 0, "Created": 0,
               "ParentId": "", "RepoDigests": [], "VirtualSize": i.get("size", 0),
               "Labels": {}} for i in usage.get("Images", {}).get("per_image", [])]
    req.reply_json(200, {"LayersSize": usage.get("Images", {}).get("size", 0),
                         "Images": images, "Containers": [], "Volumes": [],
                         "BuildCache": []})


@router.add("POST", "/auth")
def auth(ctx: ServerContext, req: Request) -> None:
    req.json(required=False)
    req.reply_json(200, {"Status": "Login Succeeded", "IdentityToken": ""})


@router.add("GET", "/events")
def events(ctx: ServerContext, req: Request) -> None:
    """The engine's events as dockerd streams them: `since` (history from then), `until`
    (the stream ends then; in the past: only history), `filters`. Without the engine's
    "events" capability the stream stays open and empty until the client goes or `until`."""
    from pytest_isobox.engine import InvalidSpec
    from pytest_isobox.engine import events as engine_events

    now = time.time()
    try:
        since = engine_events.parse_time(req.arg("since"), now) if req.arg("since") else None
        until = engine_events.parse_time(req.arg("until"), now) if req.arg("until") else None
        filters = parse_filters(req.arg("filters"))
        for key in filters:
            if key not in engine_events.FILTER_KEYS:
                raise InvalidSpec(f"invalid filter {key!r}")
    except InvalidSpec as exc:
        raise ApiError(400, str(exc)) from None
    if "events" not in getattr(ctx.engine, "capabilities", ()):
        out = req.stream()
        timeout = None if until is None else max(0.0, until - now)
        select.select([req.connection], [], [], timeout)  # readable: the client closed
        out.close()
        return
    stream = ctx.engine.events(since=since, until=until, follow=until is None or until > now)
    out = req.stream()
    try:
        for event in stream:
            if event is None:
                if select.select([req.connection], [], [], 0)[0]:
                    break  # the client closed its side
            elif engine_events.matches(event, filters):
                out.write_json(engine_events.docker_document(event))
    finally:
        stream.close()
    out.close()
