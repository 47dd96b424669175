"""Registry credentials in Docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker`).

Read as docker reads them: `credHelpers[host]`, else `credsStore`, through the
`docker-credential-<name>` programs (`get`/`store`/`erase` on stdin), else `auths[host].auth`
(base64 `user:password`). Docker Hub's key is `https://index.docker.io/v1/`. `login` and
`logout` write the same file (atomically) or the helper, as `docker login` does.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pytest_isobox.images.atomic import write_file_atomic
from pytest_isobox.images.reference import DEFAULT_DOMAIN
from pytest_isobox.images.registry.errors import RegistryError
from pytest_isobox.images.registry.settings import DOCKER_HUB_API, DOCKER_HUB_AUTH_KEY


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str


def config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def config_path() -> Path:
    return config_dir() / "config.json"


def server_key(domain: str) -> str:
    """The `auths` key of a registry: Docker Hub's legacy URL, else `host[:port]`."""
    if domain in (DEFAULT_DOMAIN, "index.docker.io", DOCKER_HUB_API, DOCKER_HUB_AUTH_KEY):
        return DOCKER_HUB_AUTH_KEY
    return domain.removeprefix("https://").removeprefix("http://").rstrip("/")


def _read_config() -> dict:
    path = config_path()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise RegistryError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{path}: expected a JSON object")
    return doc


def _helper(name: str, action: str, payload: str) -> str:
    program = f"docker-credential-{name}"
    try:
        done = subprocess.run([program, action], input=payload.encode(), capture_output=True,
                              timeout=60, check=False)
    except FileNotFoundError:
        raise RegistryError(f"credential helper {program} (from {config_path()}) is not "
                            "installed") from None
    out = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0:
        if "credentials not found" in out.lower():
            return ""
        message = (out or done.stderr.decode(errors="replace")).strip().splitlines()
        raise RegistryError(f"{program} {action} failed: {message[0] if message else done}")
    return out


def _helper_for(doc: dict, key: str) -> str | None:
    helpers = doc.get("credHelpers") or {}
    host = key if key != DOCKER_HUB_AUTH_KEY else DEFAULT_DOMAIN
    return helpers.get(key) or helpers.get(host) or doc.get("credsStore") or None


def lookup(domain: str) -> Credentials | None:
    """The stored credentials for a registry domain, None when there are none."""
    doc = _read_config()
    key = server_key(domain)
    helper = _helper_for(doc, key)
    if helper:
        out = _helper(helper, "get", key)
        if out:
            try:
                found = json.loads(out)
                return Credentials(found["Username"], found["Secret"])
            except (ValueError, KeyError, TypeError):
                raise RegistryError(f"docker-credential-{helper} get: unexpected output") from None
    auths = doc.get("auths") or {}
    for candidate in (key, f"https://{key}", f"http://{key}", f"https://{key}/v1/",
                      f"https://{key}/v2/"):
        entry = auths.get(candidate)
        if isinstance(entry, dict):
            return _from_entry(entry, candidate)
    return None


def configured_domains() -> list[str]:
    """The registries config.json keeps credentials or a helper for (`auths`, `credHelpers`),
    as reference domains (`docker.io` for Docker Hub's key)."""
    doc = _read_config()
    domains = set()
    for key in {*(doc.get("auths") or {}), *(doc.get("credHelpers") or {})}:
        if server_key(key) == DOCKER_HUB_AUTH_KEY:
            domains.add(DEFAULT_DOMAIN)
        else:
            domains.add(key.removeprefix("https://").removeprefix("http://").split("/")[0])
    return sorted(domains)


def _from_entry(entry: dict, key: str) -> Credentials | None:
    if entry.get("auth"):
        try:
            user, sep, secret = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(f"{config_path()}: auths[{key!r}].auth is not base64 "
                                "user:password") from None
        if sep:
            return Credentials(user, secret)
    if entry.get("username") and entry.get("password"):
        return Credentials(entry["username"], entry["password"])
    return None


def store(domain: str, credentials: Credentials) -> str:
    """Save credentials as `docker login` does; returns where they went (helper or file)."""
    doc = _read_config()
    key = server_key(domain)
    helper = _helper_for(doc, key)
    if helper:
        _helper(helper, "store", json.dumps({"ServerURL": key, "Username": credentials.username,
                                             "Secret": credentials.secret}))
        doc.setdefault("auths", {})[key] = {}
        where = f"docker-credential-{helper}"
    else:
        token = base64.b64encode(f"{credentials.username}:{credentials.secret}".encode())
        doc.setdefault("auths", {})[key] = {"auth": token.decode()}
        where = str(config_path())
    _write_config(doc)
    return where


def erase(domain: str) -> bool:
    """Forget a registry's credentials (helper and file); whether there were any."""
    doc = _read_config()
    key = server_key(domain)
    helper = _helper_for(doc, key)
    had = key in (doc.get("auths") or {})
    if helper:
        had = bool(_helper(helper, "get", key)) or had
        _helper(helper, "erase", key)
    if key in (doc.get("auths") or {}):
        del doc["auths"][key]
        _write_config(doc)
    return had


def _write_config(doc: dict) -> None:
    """Replace config.json atomically; it is never readable by others, not even briefly."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_file_atomic(path, (json.dumps(doc, indent="\t") + "\n").encode(), path.parent,
                      mode=0o600)
