"""Images from registries through the daemon: pull, push, and the credentials it is given.

The daemon speaks to the registry itself (its own TLS, mirrors and insecure settings); we give
it the credentials of Docker's `config.json` (auths, credsStore, credHelpers, read by
images/registry/credentials) as Docker's CLI does: `X-Registry-Auth` with the credentials of
the one registry a pull or push addresses, `X-Registry-Config` with those of the registries a
build's FROM lines name. The daemon's progress messages become our progress events, its errors
our registry errors (NameUnknown is an ImageNotFound), each one line naming the image.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.images.reference import Reference, is_id_prefix, parse_reference
from pytest_isobox.images.registry import credentials
from pytest_isobox.images.registry.errors import NameUnknown, RegistryError, Unauthorized

Progress = Callable[[str, str, int, int], None]

_EVENTS = {  # the daemon's status words -> our progress events
    "Pulling fs layer": "waiting", "Waiting": "waiting", "Preparing": "waiting",
    "Downloading": "download", "Pushing": "upload",
    "Download complete": "done", "Pull complete": "done", "Pushed": "done",
    "Already exists": "exists", "Layer already exists": "exists",
}
_NOT_FOUND = re.compile(r"manifest unknown|name unknown|not found|does not exist",
                        re.IGNORECASE)
_UNAUTHORIZED = re.compile(r"unauthorized|no basic auth credentials|authentication required|"
                           r"denied", re.IGNORECASE)
_DIGEST = re.compile(r"(?:\S+: )?[Dd]igest: (sha256:[0-9a-f]{64})")


def encode(doc: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def _auth_entry(domain: str) -> dict | None:
    found = credentials.lookup(domain)
    if found is None:
        return None
    key = credentials.server_key(domain)
    if found.username == "<token>":  # an identity token, as config.json stores one
        return {"identitytoken": found.secret, "serveraddress": key}
    return {"username": found.username, "password": found.secret, "serveraddress": key}


def registry_auth(domain: str) -> str | None:
    """X-Registry-Auth for a pull or push from `domain`: its credentials only, None if none."""
    entry = _auth_entry(domain)
    return None if entry is None else encode(entry)


def registry_config(domains: Iterable[str | None]) -> str | None:
    """X-Registry-Config for a build: the credentials of `domains` (those that have some)."""
    config = {}
    for domain in sorted({d for d in domains if d}):
        entry = _auth_entry(domain)
        if entry is not None:
            config[entry["serveraddress"]] = entry
    return encode(config) if config else None


def domain_of(ref: str) -> str | None:
    """The registry domain of a reference, None for what no registry serves (an image id)."""
    if ref.startswith("sha256:") or (is_id_prefix(ref) and len(ref) >= 12):
        return None
    try:
        return parse_reference(ref).domain
    except InvalidSpec:
        return None


def pull_query(ref: Reference) -> dict[str, str]:
    """POST /images/create's query: the repository, and the tag or digest."""
    name = ref.familiar_name
    return {"fromImage": name, "tag": ref.digest or ref.tag or "latest"}


def push_target(ref: Reference) -> tuple[str, str]:
    """(repository, tag) for POST /images/{name}/push."""
    if ref.digest:
        raise RegistryError(f"push {ref}: a digest cannot be pushed, name a tag")
    return ref.familiar_name, ref.tag or "latest"


class DaemonProgress:
    """Reads a pull or push stream: progress events out, the error and digest kept."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self.error: str | None = None
        self.digest: str | None = None

    def feed(self, message: dict) -> None:
        if "error" in message or "errorDetail" in message:
            detail = message.get("errorDetail") or {}
            self.error = str(detail.get("message") or message.get("error") or "failed")
            return
        aux = message.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            self.digest = str(aux["Digest"])
        status = str(message.get("status") or "")
        found = _DIGEST.match(status)  # "Digest: ..." (pull), "<tag>: digest: ..." (push)
        if found:
            self.digest = self.digest or found[1]
        event = _EVENTS.get(status) or ("mounted" if status.startswith("Mounted from") else None)
        layer = str(message.get("id") or "")
        if event and layer and self._progress is not None:
            detail = message.get("progressDetail") or {}
            self._progress(event, layer, int(detail.get("current") or 0),
                           int(detail.get("total") or 0))


def registry_error(verb: str, ref: Reference, message: str, *, sent_credentials: bool,
                   daemon: str) -> RegistryError:
    """The daemon's failure as our error type, one line naming the image and the registry."""
    line = (message.strip().splitlines() or ["failed"])[0]
    text = f"{verb} {ref} through the Docker daemon at {daemon}: {line}"
    if _UNAUTHORIZED.search(line) and not (_NOT_FOUND.search(line) and sent_credentials):
        domain = ref.domain
        hint = "credentials refused" if sent_credentials else \
            f"no credentials: run isobox login {domain}"
        return Unauthorized(f"{text} (registry {domain}: {hint})")
    if _NOT_FOUND.search(line):
        return NameUnknown(text)
    return RegistryError(text)
