"""Paths to handlers: Docker's versioned (`/v1.24` .. `/v1.43`) and unversioned paths, with
`{name}` parts (one path segment) and `{name*}` parts (the rest, for image names with `/`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_isobox.server.errors import ApiError

API_VERSION = "1.43"
MIN_API_VERSION = "1.24"
_VERSION_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(?=/)")


def version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Any]


class Router:
    """Routes added by the route modules; `match` strips the version and finds one."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str) -> Callable[[Callable], Callable]:
        """Decorator: `handler(request, **parts)` answers `method template`."""
        regex = re.sub(r"\{(\w+)\*\}", r"(?P<\1>.+)", template)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        pattern = re.compile(f"^{regex}$")

        def register(handler: Callable) -> Callable:
            self.routes.append(Route(method, pattern, handler))
            return handler
        return register

    def match(self, method: str, path: str) -> tuple[Callable, dict[str, str], str]:
        """(handler, path parts, the API version asked for); ApiError 400 for a version out
        of range, 404 for an unknown path (as dockerd: `page not found`)."""
        version = API_VERSION
        m = _VERSION_PREFIX.match(path)
        if m:
            asked = (int(m.group(1)), int(m.group(2)))
            version = f"{asked[0]}.{asked[1]}"
            if asked < version_tuple(MIN_API_VERSION):
                raise ApiError(400, f"client version {version} is too old. Minimum supported "
                                    f"API version is {MIN_API_VERSION}, please upgrade your "
                                    "client to a newer version")
            if asked > version_tuple(API_VERSION):
                raise ApiError(400, f"client version {version} is too new. Maximum supported "
                                    f"API version is {API_VERSION}")
            path = path[m.end():]
        method = "GET" if method == "HEAD" and not self._has(method, path) else method
        allowed = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found:
                if route.method == method:
                    return route.handler, found.groupdict(), version
                allowed = True
        if allowed:
            raise ApiError(405, f"method {method} not allowed on {path}")
        raise ApiError(404, "page not found")

    def _has(self, method: str, path: str) -> bool:
        return any(r.method == method and r.pattern.match(path) for r in self.routes)
