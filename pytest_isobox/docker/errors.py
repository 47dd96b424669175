"""Docker's HTTP errors as our error types, so callers catch the same errors for every engine.

404 becomes the *NotFound of what is missing (judged from Docker's message, else from what
the request was about); 409 a `ConflictError` (name taken, resource in use; also 403 for a
network with containers attached) except "is not running", a `ContainerError` as with the
native engine; everything else keeps Docker's message in a `ContainerError` (container
requests), a `BuildError` (builds), an `InvalidSpec` (other 400s) or an `IsoboxError`.
Podman's service says some of these in other words and codes: they map to the same types.
"""

from __future__ import annotations

import json
import re

from pytest_isobox.engine import (
    BuildError,
    ConflictError,
    ContainerError,
    ContainerNotFound,
    ImageNotFound,
    InvalidSpec,
    IsoboxError,
    NetworkNotFound,
    VolumeNotFound,
)

_NOT_FOUND_BY_MESSAGE: list[tuple[re.Pattern[str], type[IsoboxError]]] = [
    (re.compile(r"no such image|image .* not found|reference does not exist", re.IGNORECASE),
     ImageNotFound),
    (re.compile(r"no such container", re.IGNORECASE), ContainerNotFound),
    (re.compile(r"network .* not found|no such network", re.IGNORECASE), NetworkNotFound),
    (re.compile(r"no such volume|volume .* not found", re.IGNORECASE), VolumeNotFound),
]

# Podman's 500s for Docker's 409s: a name taken, a network that exists or has containers, a
# running container removed without force
_PODMAN_CONFLICTS = ("is already in use", "network already exists", "network is being used",
                     "as it is running")

_NOT_FOUND_BY_KIND: dict[str, type[IsoboxError]] = {
    "image": ImageNotFound,
    "container": ContainerNotFound,
    "network": NetworkNotFound,
    "volume": VolumeNotFound,
}

_OTHER_BY_KIND: dict[str, type[IsoboxError]] = {
    "container": ContainerError,
    "exec": ContainerError,
    "build": BuildError,
}


def daemon_message(body: bytes) -> str:
    """The `message` of Docker's JSON error body, or the body itself."""
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    return str(doc.get("message", text)) if isinstance(doc, dict) else text


def error_for(status: int, message: str, kind: str = "") -> IsoboxError:
    """The exception for one failed response."""
    if "can only create exec sessions on running containers" in message:  # Podman's words
        return ContainerError(f"container is not running: {message}")
    if any(m in message for m in _PODMAN_CONFLICTS):
        return ConflictError(message)
    if status == 404:
        for pattern, cls in _NOT_FOUND_BY_MESSAGE:
            if pattern.search(message):
                return cls(message)
        return _NOT_FOUND_BY_KIND.get(kind, _OTHER_BY_KIND.get(kind, IsoboxError))(message)
    if status == 409 or (status == 403 and "active endpoints" in message):
        if "is not running" in message or "is paused" in message:
            return ContainerError(message)
        return ConflictError(message)
    if status == 400 and kind not in _OTHER_BY_KIND:
        return InvalidSpec(message)
    return _OTHER_BY_KIND.get(kind, IsoboxError)(message)


def raise_for_response(status: int, body: bytes, kind: str = "") -> None:
    if status >= 400:
        raise error_for(status, daemon_message(body), kind)
