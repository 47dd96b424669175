"""The application: one request in, the matching route's handler run, any error answered
as Docker's `{"message": ...}` (or, once a stream has begun, the connection closed)."""

from __future__ import annotations

import sys
import traceback

from pytest_isobox._version import __version__
from pytest_isobox.server.context import ServerContext
from pytest_isobox.server.errors import api_error
from pytest_isobox.server.http import ClientGone, Request
from pytest_isobox.server.routes import containers, execs, images, networks, system, volumes
from pytest_isobox.server.routing import API_VERSION, Router

DEFAULT_HEADERS = {"Api-Version": API_VERSION, "Docker-Experimental": "false",
                   "Ostype": "linux", "Server": f"isobox/{__version__} (linux)"}


def make_router() -> Router:
    router = Router()
    for module in (system, containers, execs, images, networks, volumes):
        router.routes.extend(module.router.routes)
    return router


class App:
    def __init__(self, ctx: ServerContext, *, debug: bool = False) -> None:
        self.ctx = ctx
        self.router = make_router()
        self.debug = debug

    def __call__(self, req: Request) -> None:
        try:
            handler, parts, version = self.router.match(req.method, req.path)
            req.api_version = version
            handler(self.ctx, req, **parts)
        except ClientGone:
            raise
        except Exception as exc:
            error = api_error(exc)
            if error.status == 500 or self.debug:
                traceback.print_exc(file=sys.stderr)
            if not req.answered:
                req.reply_json(error.status, {"message": error.message})
            else:
                raise ClientGone() from exc  # mid-stream: end the connection
