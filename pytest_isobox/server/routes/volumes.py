"""Volume endpoints: create, list, inspect, delete, prune."""

from __future__ import annotations

import contextlib
import secrets

from pytest_isobox.engine import ConflictError, VolumeNotFound, require
from pytest_isobox.server.context import ServerContext
from pytest_isobox.server.documents import volume_document
from pytest_isobox.server.errors import ApiError
from pytest_isobox.server.http import Request
from pytest_isobox.server.routing import Router

router = Router()


def _names(ctx: ServerContext) -> list[str]:
    require(ctx.engine, "volumes", "list volumes")
    return ctx.call(ctx.engine.volumes)


def _home(ctx: ServerContext) -> str | None:
    return str(ctx.home) if ctx.home else None


@router.add("GET", "/volumes")
def list_volumes(ctx: ServerContext, req: Request) -> None:
    req.reply_json(200, {"Volumes": [volume_document(n, _home(ctx)) for n in _names(ctx)],
                         "Warnings": []})


@router.add("POST", "/volumes/create")
def create(ctx: ServerContext, req: Request) -> None:
    require(ctx.engine, "volumes", "create volumes")
    body = req.json(required=False)
    if not isinstance(body, dict):
        raise ApiError(400, "volume create expects a JSON object")
    name = body.get("Name") or secrets.token_hex(32)
    if not isinstance(name, str):
        raise ApiError(400, f"invalid volume name {name!r}")
    if (body.get("Driver") or "local") != "local":
        raise ApiError(400, f"volume driver {body['Driver']!r} is not supported (only local)")
    created = ctx.call(ctx.engine.volume_create, name)
    req.reply_json(201, volume_document(created or name, _home(ctx)))


@router.add("GET", "/volumes/{name}")
def inspect(ctx: ServerContext, req: Request, name: str) -> None:
    if name not in _names(ctx):
        raise ApiError(404, f"get {name}: no such volume")
    req.reply_json(200, volume_document(name, _home(ctx)))


@router.add("DELETE", "/volumes/{name}")
def remove(ctx: ServerContext, req: Request, name: str) -> None:
    try:
        ctx.call(ctx.engine.volume_remove, name, force=req.flag("force"))
    except VolumeNotFound:
        raise ApiError(404, f"get {name}: no such volume") from None
    req.reply_empty(204)


@router.add("POST", "/volumes/prune")
def prune(ctx: ServerContext, req: Request) -> None:
    deleted = []
    for name in _names(ctx):
        with contextlib.suppress(ConflictError, VolumeNotFound):
            ctx.call(ctx.engine.volume_remove, name)
            deleted.append(name)
    req.reply_json(200, {"VolumesDeleted": deleted, "SpaceReclaimed": 0})
