"""Network endpoints: create, list, inspect, connect, disconnect, delete, prune."""

from __future__ import annotations

import contextlib

from pytest_isobox.engine import ConflictError, ContainerNotFound, NetworkNotFound, require
from pytest_isobox.server.context import ServerContext
from pytest_isobox.server.documents import network_document
from pytest_isobox.server.errors import ApiError
from pytest_isobox.server.filters import parse_filters
from pytest_isobox.server.http import Request
from pytest_isobox.server.routing import Router

router = Router()
_BUILTIN = ("bridge", "host", "none")


def _builtin(name: str) -> dict:
    driver = {"none": "null"}.get(name, name)
    return {"Name": name, "Id": name, "Created": "0001-01-01T00:00:00Z", "Scope": "local",
            "Driver": driver, "EnableIPv6": False, "Internal": False, "Attachable": False,
            "Ingress": False, "IPAM": {"Driver": "default", "Options": None, "Config": []},
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
            "Options": {}, "Labels": {}}


def _all(ctx: ServerContext) -> list[dict]:
    require(ctx.engine, "networks", "list networks")
    found = [network_document(n) for n in ctx.call(ctx.engine.networks)]
    names = {d["Name"] for d in found}
    return found + [_builtin(n) for n in _BUILTIN if n not in names]


def _find(ctx: ServerContext, ref: str) -> dict:
    for doc in _all(ctx):
        if ref in (doc["Name"], doc["Id"]) or (len(ref) >= 3 and doc["Id"].startswith(ref)):
            return doc
    raise ApiError(404, f"network {ref} not found")


@router.add("GET", "/networks")
def list_networks(ctx: ServerContext, req: Request) -> None:
    filters = parse_filters(req.arg("filters"))
    docs = []
    for doc in _all(ctx):
        if filters.get("name") and not any(n in doc["Name"] for n in filters["name"]):
            continue
        if filters.get("id") and not any(doc["Id"].startswith(i) for i in filters["id"]):
            continue
        if filters.get("driver") and doc["Driver"] not in filters["driver"]:
            continue
        if not all(_label(doc["Labels"], want) for want in filters.get("label", [])):
            continue
        docs.append(doc)
    req.reply_json(200, docs)


def _label(labels: dict, want: str) -> bool:
    name, sep, value = want.partition("=")
    return name in labels and (not sep or labels[name] == value)


@router.add("GET", "/networks/{id}")
def inspect(ctx: ServerContext, req: Request, id: str) -> None:
    req.reply_json(200, _find(ctx, id))


@router.add("POST", "/networks/create")
def create(ctx: ServerContext, req: Request) -> None:
    require(ctx.engine, "networks", "create networks")
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("Name"), str) or not body["Name"]:
        raise ApiError(400, "network create needs a Name")
    name = body["Name"]
    if name in _BUILTIN:
        raise ApiError(403, f"{name} is a pre-defined network and cannot be created")
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise ApiError(400, f"network driver {driver!r} is not supported (only bridge)")
    configs = ((body.get("IPAM") or {}).get("Config") or [])
    subnet = configs[0].get("Subnet") if configs and isinstance(configs[0], dict) else None
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise ApiError(400, "Labels must be a JSON object")
    with contextlib.suppress(NetworkNotFound):
        ctx.call(ctx.engine.network_inspect, name)
        raise ApiError(409, f"network with name {name} already exists")
    labels = {str(k): str(v) for k, v in labels.items()}
    net = ctx.call(ctx.engine.network_create, name, subnet=subnet, labels=labels)
    ctx.sessions.track(labels, req.peer_pid)
    req.reply_json(201, {"Id": net.id, "Warning": ""})


@router.add("DELETE", "/networks/{id}")
def remove(ctx: ServerContext, req: Request, id: str) -> None:
    doc = _find(ctx, id)
    if doc["Name"] in _BUILTIN:
        raise ApiError(403, f"{doc['Name']} is a pre-defined network and cannot be removed")
    ctx.call(ctx.engine.network_remove, doc["Name"])
    req.reply_empty(204)


@router.add("POST", "/networks/prune")
def prune(ctx: ServerContext, req: Request) -> None:
    deleted = []
    for doc in _all(ctx):
        if doc["Name"] in _BUILTIN or doc["Containers"]:
            continue
        with contextlib.suppress(ConflictError, NetworkNotFound):
            ctx.call(ctx.engine.network_remove, doc["Name"])
            deleted.append(doc["Name"])
    req.reply_json(200, {"NetworksDeleted": deleted})


@router.add("POST", "/networks/{id}/connect")
def connect(ctx: ServerContext, req: Request, id: str) -> None:
    """The engine's network_connect, with the aliases of EndpointConfig."""
    doc = _find(ctx, id)
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
        raise ApiError(400, "network connect needs a Container")
    endpoint = body.get("EndpointConfig") or {}
    aliases = endpoint.get("Aliases") if isinstance(endpoint, dict) else None
    if aliases is not None and (not isinstance(aliases, list)
                                or not all(isinstance(a, str) for a in aliases)):
        raise ApiError(400, "EndpointConfig.Aliases must be a list of strings")
    cid = _container_id(ctx, body["Container"])
    ctx.call(ctx.engine.network_connect, doc["Name"], cid, aliases=list(aliases or []))
    ctx.listed.pop(cid, None)
    req.reply_empty(200)


@router.add("POST", "/networks/{id}/disconnect")
def disconnect(ctx: ServerContext, req: Request, id: str) -> None:
    doc = _find(ctx, id)
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
        raise ApiError(400, "network disconnect needs a Container")
    cid = _container_id(ctx, body["Container"])
    ctx.call(ctx.engine.network_disconnect, doc["Name"], cid, force=bool(body.get("Force")))
    ctx.attachments[cid] = [a for a in ctx.attachments.get(cid, []) if a.network != doc["Name"]]
    ctx.listed.pop(cid, None)
    req.reply_empty(200)


def _container_id(ctx: ServerContext, ref: str) -> str:
    try:
        return ctx.call(ctx.engine.state, ref).id
    except ContainerNotFound:
        raise ApiError(404, f"No such container: {ref}") from None
