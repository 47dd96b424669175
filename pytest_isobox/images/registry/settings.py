"""Where registries are and how to reach them, as Docker configures it.

- Docker Hub (`docker.io`) is served by `registry-1.docker.io`; `ISOBOX_REGISTRY_MIRRORS`
  (comma-separated URLs, Docker's `registry-mirrors`) are tried first for it.
- Plain http is allowed only for loopback hosts and hosts in `ISOBOX_INSECURE_REGISTRIES`
  (comma-separated `host[:port]`, Docker's `insecure-registries`); TLS is verified for every
  other https connection, insecure hosts excepted (as Docker does).
- TLS material per host in `/etc/docker/certs.d/<host[:port]>/` (`ISOBOX_CERTS_D` moves it):
  `*.crt` are CAs added to the system's, `<name>.cert` + `<name>.key` a client certificate.
- `ISOBOX_OFFLINE=1`: nothing touches the network.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from pytest_isobox.images.reference import DEFAULT_DOMAIN

DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_TRUE = {"1", "true", "yes", "on"}


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def offline() -> bool:
    """Whether ISOBOX_OFFLINE forbids every network access."""
    return os.environ.get("ISOBOX_OFFLINE", "").strip().lower() in _TRUE


def is_loopback(host: str) -> bool:
    """Whether `host` (without port) names this machine: localhost or a loopback address."""
    name = host.strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def split_host_port(netloc: str) -> tuple[str, int | None]:
    """`host[:port]` (IPv6 in brackets) -> (host, port or None)."""
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    host, sep, port = netloc.rpartition(":")
    if sep and port.isdigit() and host:
        return host, int(port)
    return netloc, None


@dataclass
class RegistrySettings:
    """Everything that decides how a registry host is reached."""

    insecure: list[str] = field(default_factory=list)
    mirrors: list[str] = field(default_factory=list)
    certs_d: Path = Path("/etc/docker/certs.d")

    @classmethod
    def from_env(cls) -> RegistrySettings:
        return cls(insecure=_split(os.environ.get("ISOBOX_INSECURE_REGISTRIES")),
                   mirrors=[m.rstrip("/") for m in
                            _split(os.environ.get("ISOBOX_REGISTRY_MIRRORS"))],
                   certs_d=Path(os.environ.get("ISOBOX_CERTS_D", "/etc/docker/certs.d")))

    def api_host(self, domain: str) -> str:
        """The host[:port] serving a reference's domain (Docker Hub's API host for docker.io)."""
        return DOCKER_HUB_API if domain == DEFAULT_DOMAIN else domain

    def endpoints(self, domain: str) -> list[str]:
        """Base URLs to try for `domain`, in order ("" scheme: chosen by `schemes`)."""
        if domain == DEFAULT_DOMAIN:
            return [*self.mirrors, f"https://{DOCKER_HUB_API}"]
        return [f"//{domain}"]

    def is_insecure(self, netloc: str) -> bool:
        """Listed in ISOBOX_INSECURE_REGISTRIES (TLS unverified, plain http allowed)."""
        host, _ = split_host_port(netloc)
        return netloc in self.insecure or host in self.insecure

    def allows_http(self, netloc: str) -> bool:
        return self.is_insecure(netloc) or is_loopback(split_host_port(netloc)[0])

    def tls_context(self, netloc: str) -> ssl.SSLContext:
        """System CAs plus certs.d's for this host, its client certificate if any."""
        context = ssl.create_default_context()
        if self.is_insecure(netloc):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        from pytest_isobox.images.registry.errors import RegistryError

        folder = self.certs_d / netloc
        if not folder.is_dir():
            return context
        for ca in sorted(folder.glob("*.crt")):
            try:
                context.load_verify_locations(cafile=str(ca))
            except (ssl.SSLError, OSError) as exc:
                raise RegistryError(f"{ca}: not a CA certificate in PEM ({_why(exc)})") from None
        for cert in sorted(folder.glob("*.cert")):
            key = cert.with_suffix(".key")
            if not key.is_file():
                raise RegistryError(f"{cert}: client certificate without its key {key.name}")
            try:
                context.load_cert_chain(str(cert), str(key))
            except (ssl.SSLError, OSError) as exc:
                raise RegistryError(f"{cert}: client certificate and {key.name} do not load "
                                    f"({_why(exc)})") from None
        return context


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)
