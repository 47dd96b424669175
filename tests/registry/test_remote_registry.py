"""Registries on another "host" (a network namespace the test makes, reached over a veth):
TLS with a CA and client certificates from a private certs.d (ISOBOX_CERTS_D), and the
insecure-registries setting for plain http and unverified TLS off loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.images.registry.errors import RegistryError
from pytest_isobox.images.store import ImageStore
from tests import netns
from tests.conftest import needs_root
from tests.registry.servers import Registry, make_ca, make_client_cert

pytestmark = [needs_root, pytest.mark.skipif(shutil.which("ip") is None,
                                             reason="needs iproute2")]


@pytest.fixture(scope="module")
def far_host() -> Iterator[netns.NetnsHost]:
    host = netns.make()
    try:
        yield host
    finally:
        netns.remove(host)


@pytest.fixture(scope="module")
def mtls_registry(far_host: netns.NetnsHost, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Registry, Path]]:
    """TLS at the namespace's address; clients must show a certificate of the test's CA.
    Yields it and the folder holding ca.crt, client.cert and client.key."""
    root = tmp_path_factory.mktemp("mtls-registry")
    pki = root / "pki"
    ca, cert, key = make_ca(pki, far_host.ip)
    client = make_client_cert(pki, ca, pki / "ca.key")
    server = Registry(root / "server", host=far_host.ip, tls=(cert, key), netns=far_host.netns,
                      client_ca=ca, client_cert=client).start(ca=ca)
    try:
        yield server, pki
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plain_far_registry(far_host: netns.NetnsHost,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Plain http at the namespace's address: not loopback, so not allowed by default."""
    server = Registry(tmp_path_factory.mktemp("plain-far"), host=far_host.ip,
                      netns=far_host.netns).start()
    try:
        yield server
    finally:
        server.stop()


def _certs_d(tmp_path: Path, netloc: str, pki: Path, *names: str) -> Path:
    folder = tmp_path / "certs.d" / netloc
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(pki / name, folder / name)
    return tmp_path / "certs.d"


def test_client_certificate_from_certs_d(mtls_registry: tuple[Registry, Path],
                                         store: ImageStore, two_layer_image: str,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, pki = mtls_registry
    ref = f"{server.netloc}/far/app:1"
    store.tag(two_layer_image, ref)
    monkeypatch.setenv("ISOBOX_CERTS_D", str(tmp_path / "none"))
    with pytest.raises(RegistryError, match=rf"registry {server.netloc}: TLS certificate not "
                                            "trusted"):
        store.push(ref)
    monkeypatch.setenv("ISOBOX_CERTS_D", str(_certs_d(tmp_path / "a", server.netloc, pki,
                                                      "ca.crt")))
    with pytest.raises(RegistryError, match=rf"registry {server.netloc}: .*it wants a client "
                                            r"certificate: .*/a/certs\.d/") as caught:
        store.push(ref)  # trusted, but no client certificate: the server ends the handshake
    assert "\n" not in str(caught.value)
    half = _certs_d(tmp_path / "b", server.netloc, pki, "ca.crt", "client.cert")
    monkeypatch.setenv("ISOBOX_CERTS_D", str(half))
    with pytest.raises(RegistryError, match=r"client\.cert: client certificate without its "
                                            r"key client\.key"):
        store.push(ref)
    monkeypatch.setenv("ISOBOX_CERTS_D", str(_certs_d(tmp_path / "c", server.netloc, pki,
                                                      "ca.crt", "client.cert", "client.key")))
    store.push(ref)
    assert ImageStore(tmp_path / "fresh").pull(ref) == two_layer_image


def test_insecure_registries_allow_http_and_unverified_tls_off_loopback(
        plain_far_registry: Registry, mtls_registry: tuple[Registry, Path], store: ImageStore,
        two_layer_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = f"{plain_far_registry.netloc}/far/plain:1"
    store.tag(two_layer_image, ref)
    monkeypatch.setenv("ISOBOX_CERTS_D", str(tmp_path / "none"))
    with pytest.raises(RegistryError, match=rf"registry {plain_far_registry.netloc}: .*plain "
                                            "http, which is used only for loopback and hosts "
                                            "in ISOBOX_INSECURE_REGISTRIES"):
        store.push(ref)  # https fails there, and plain http is not allowed for that host
    assert '"PUT ' not in plain_far_registry.log_path.read_text()
    monkeypatch.setenv("ISOBOX_INSECURE_REGISTRIES",
                       f"example.test:5000, {plain_far_registry.netloc}")
    store.push(ref)
    assert ImageStore(tmp_path / "fresh").pull(ref) == two_layer_image
    # a TLS registry whose CA we do not have: insecure means its certificate goes unverified
    server, pki = mtls_registry
    monkeypatch.setenv("ISOBOX_INSECURE_REGISTRIES", server.host)  # a host names every port
    monkeypatch.setenv("ISOBOX_CERTS_D", str(_certs_d(tmp_path / "d", server.netloc, pki,
                                                      "client.cert", "client.key")))
    tls_ref = f"{server.netloc}/far/unverified:1"
    store.tag(two_layer_image, tls_ref)
    store.push(tls_ref)
    assert ImageStore(tmp_path / "fresh-tls").pull(tls_ref) == two_layer_image
