"""`isobox login` / `logout`: check credentials against the registry, then store them."""

from __future__ import annotations

from pytest_isobox.images.registry import credentials as creds
from pytest_isobox.images.registry.credentials import Credentials
from pytest_isobox.images.registry.errors import OfflineError
from pytest_isobox.images.registry.settings import RegistrySettings, offline
from pytest_isobox.images.registry.transport import Transport


def _domain(server: str) -> str:
    server = server.removeprefix("https://").removeprefix("http://").rstrip("/")
    server = server.removesuffix("/v1").removesuffix("/v2")
    return "docker.io" if server in ("index.docker.io", "registry-1.docker.io") else server


def login(server: str, username: str, password: str,
          settings: RegistrySettings | None = None) -> str:
    """Verify the credentials (GET /v2/ through the registry's auth flow); returns where
    they were stored. Unauthorized names the registry when they are refused."""
    domain = _domain(server)
    if offline():
        raise OfflineError(f"login {domain}: ISOBOX_OFFLINE is set")
    settings = settings or RegistrySettings.from_env()
    given = Credentials(username, password)
    base = settings.endpoints(domain)[-1]
    transport = Transport(base, given, settings, domain)
    # an empty scope: the token server checks the credentials alone
    with transport.request("GET", "/v2/", scope="") as resp:
        resp.read()
    return creds.store(domain, given)


def logout(server: str) -> bool:
    return creds.erase(_domain(server))
