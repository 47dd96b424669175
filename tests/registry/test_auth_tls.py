"""Auth and TLS against real registries: htpasswd Basic over TLS from a CA the test makes,
and Bearer tokens from a small token server written here (docker-registry's token auth)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_isobox.images.registry.errors import RegistryError, Unauthorized
from pytest_isobox.images.store import ImageStore
from tests.registry import credhelper
from tests.registry.servers import Registry, make_ca, run

USER, PASSWORD = "tester", "s3cret-pass"


def _isobox(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_isobox.cli", *args], input=stdin,
                          env={**os.environ, **env}, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    """docker-registry with htpasswd Basic auth and TLS; yields it and its CA certificate."""
    root = tmp_path_factory.mktemp("tls-registry")
    ca, cert, key = make_ca(root / "pki")
    htpasswd = root / "htpasswd"
    run("htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD)
    server = Registry(root / "server", htpasswd=htpasswd, tls=(cert, key)).start(ca=ca)
    try:
        yield server, ca
    finally:
        server.stop()


@pytest.fixture
def trusted(tls_registry: tuple[Registry, Path], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The TLS registry with its CA in a private certs.d (ISOBOX_CERTS_D)."""
    server, ca = tls_registry
    folder = tmp_path / "certs.d" / server.netloc
    folder.mkdir(parents=True)
    (folder / "ca.crt").write_bytes(ca.read_bytes())
    monkeypatch.setenv("ISOBOX_CERTS_D", str(tmp_path / "certs.d"))
    return server


def test_login_push_pull_over_tls_with_basic_auth(trusted: Registry, store: ImageStore,
                                                  two_layer_image: str, docker_config: Path,
                                                  tmp_path: Path) -> None:
    ref = f"{trusted.netloc}/private/app:1"
    store.tag(two_layer_image, ref)
    with pytest.raises(Unauthorized, match=rf"registry {trusted.netloc}: unauthorized \(no "
                                           rf"credentials: run isobox login {trusted.netloc}\)"):
        store.push(ref)
    wrong = _isobox("login", "-u", USER, "-p", "wrong", trusted.netloc)
    assert wrong.returncode == 1
    assert "credentials refused" in wrong.stderr and trusted.netloc in wrong.stderr
    assert not (docker_config / "config.json").exists()
    good = _isobox("login", "-u", USER, "--password-stdin", trusted.netloc,
                   stdin=PASSWORD + "\n")
    assert good.returncode == 0, good.stderr
    config = json.loads((docker_config / "config.json").read_text())
    assert config["auths"][trusted.netloc]["auth"] == base64.b64encode(
        f"{USER}:{PASSWORD}".encode()).decode()
    assert (docker_config / "config.json").stat().st_mode & 0o077 == 0
    store.push(ref)
    fresh = ImageStore(tmp_path / "fresh")
    assert fresh.pull(ref) == two_layer_image
    assert _isobox("logout", trusted.netloc).returncode == 0
    assert trusted.netloc not in json.loads((docker_config / "config.json").read_text())["auths"]
    with pytest.raises(Unauthorized):
        ImageStore(tmp_path / "after-logout").pull(ref)


def test_an_untrusted_certificate_is_refused(tls_registry: tuple[Registry, Path],
                                             store: ImageStore, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = tls_registry
    monkeypatch.setenv("ISOBOX_CERTS_D", str(tmp_path / "empty-certs.d"))
    with pytest.raises(RegistryError, match=rf"registry {server.netloc}: TLS certificate not "
                                            "trusted"):
        store.pull(f"{server.netloc}/private/app:1")


def test_the_systems_cas_are_trusted(tls_registry: tuple[Registry, Path], store: ImageStore,
                                     two_layer_image: str, docker_config: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No certs.d entry: the CA is trusted through OpenSSL's default verify paths (the system
    store; SSL_CERT_FILE points them at the test's CA so nothing system-wide changes)."""
    server, ca = tls_registry
    monkeypatch.setenv("ISOBOX_CERTS_D", str(tmp_path / "empty-certs.d"))
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {server.netloc: {
        "auth": auth}}}))
    ref = f"{server.netloc}/private/system-ca:1"
    store.tag(two_layer_image, ref)
    with pytest.raises(RegistryError, match="TLS certificate not trusted"):
        store.push(ref)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    store.push(ref)
    assert ImageStore(tmp_path / "fresh").pull(ref) == two_layer_image


def test_credentials_through_a_credential_helper(trusted: Registry, store: ImageStore,
                                                 two_layer_image: str, docker_config: Path,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """credsStore: `isobox login` stores through docker-credential-<name>, pulls read it back,
    config.json holds no secret."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    vault = tmp_path / "vault.json"
    helper = bindir / "docker-credential-isoboxtest"
    helper.write_text(f"""#!{sys.executable}
import json, sys
path = {str(vault)!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
action, payload = sys.argv[1], sys.stdin.read()
if action == "store":
    doc = json.loads(payload)
    data[doc["ServerURL"]] = [doc["Username"], doc["Secret"]]
    json.dump(data, open(path, "w"))
elif action == "get":
    if payload.strip() not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    user, secret = data[payload.strip()]
    print(json.dumps({{"ServerURL": payload.strip(), "Username": user, "Secret": secret}}))
elif action == "erase":
    data.pop(payload.strip(), None)
    json.dump(data, open(path, "w"))
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "isoboxtest"}))
    done = _isobox("login", "-u", USER, "-p", PASSWORD, trusted.netloc)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in (docker_config / "config.json").read_text()
    assert json.loads(vault.read_text()) == {trusted.netloc: [USER, PASSWORD]}
    ref = f"{trusted.netloc}/private/helper:1"
    store.tag(two_layer_image, ref)
    store.push(ref)
    assert ImageStore(tmp_path / "fresh").pull(ref) == two_layer_image
    assert _isobox("logout", trusted.netloc).returncode == 0
    assert json.loads(vault.read_text()) == {}


# ---------------------------------------------------------------------- Bearer token flow

def test_cred_helpers_answer_for_their_registry_only(trusted: Registry, registry: Registry,
                                                     store: ImageStore, two_layer_image: str,
                                                     docker_config: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """credHelpers[host] wins over auths and credsStore; other registries never ask it."""
    log = credhelper.install(tmp_path / "bin", "test", {trusted.netloc: (USER, PASSWORD)},
                             monkeypatch)
    wrong = base64.b64encode(b"nobody:wrong").decode()
    (docker_config / "config.json").write_text(json.dumps({
        "credHelpers": {trusted.netloc: "test"}, "credsStore": "absent-helper",
        "auths": {trusted.netloc: {"auth": wrong}}}))
    ref = f"{trusted.netloc}/private/credhelpers:1"
    store.tag(two_layer_image, ref)
    store.push(ref)
    assert ImageStore(tmp_path / "fresh").pull(ref) == two_layer_image
    assert set(credhelper.calls(log)) == {f"get {trusted.netloc}"}
    (docker_config / "config.json").write_text(json.dumps({
        "credHelpers": {trusted.netloc: "test"}}))
    plain = f"{registry.netloc}/public/credhelpers:1"
    store.tag(two_layer_image, plain)
    before = len(credhelper.calls(log))
    store.push(plain)
    assert ImageStore(tmp_path / "fresh-plain").pull(plain) == two_layer_image
    assert len(credhelper.calls(log)) == before  # not asked for another registry


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token server speaking docker's Bearer protocol: GET ?service=&scope= with optional
    Basic credentials; grants pull/push to USER, pull only to anonymous callers of `public/`,
    signed RS256 with a key whose certificate the registry trusts."""

    def __init__(self, folder: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "isobox token issuer")])
        now = __import__("datetime").datetime.now(__import__("datetime").UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(1)
                .not_valid_before(now - __import__("datetime").timedelta(days=1))
                .not_valid_after(now + __import__("datetime").timedelta(days=2))
                .sign(self.key, hashes.SHA256()))
        self.bundle = folder / "token-ca.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self._sign = lambda data: self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.realm = f"http://127.0.0.1:{self.httpd.server_port}/token"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        auth = request.headers.get("Authorization", "")
        self.requests.append({"query": query, "auth": auth})
        user = None
        if auth.startswith("Basic "):
            name, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            if (name, secret) != (USER, PASSWORD):
                request.send_response(401)
                request.end_headers()
                return
            user = name
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            wanted = actions.split(",")
            granted = wanted if user else (["pull"] if repo.startswith("public/") else [])
            granted = [a for a in wanted if a in granted]
            if granted:
                access.append({"type": kind, "name": repo, "actions": granted})
        now = int(time.time())
        claims = {"iss": "isobox-test-issuer", "sub": user or "", "aud": "isobox-registry",
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                  "access": access}
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self._x5c]}
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        token = f"{signing}.{_b64url(self._sign(signing.encode()))}"
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[Registry, TokenServer]]:
    root = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(root)
    server = Registry(root / "server", token={"realm": tokens.realm, "service": "isobox-registry",
                                              "issuer": "isobox-test-issuer",
                                              "bundle": tokens.bundle})
    try:
        server.start()
        yield server, tokens
    finally:
        server.stop()
        tokens.stop()


def test_bearer_token_flow_anonymous_and_with_credentials(
        token_registry: tuple[Registry, TokenServer], store: ImageStore, two_layer_image: str,
        docker_config: Path, tmp_path: Path) -> None:
    server, tokens = token_registry
    ref = f"{server.netloc}/public/tokened:1"
    store.tag(two_layer_image, ref)
    with pytest.raises(Unauthorized, match=rf"registry {server.netloc}"):
        store.push(ref)  # anonymous: pull only
    assert _isobox("login", "-u", USER, "-p", "bad", server.netloc).returncode == 1
    done = _isobox("login", "-u", USER, "-p", PASSWORD, server.netloc)
    assert done.returncode == 0, done.stderr
    store.push(ref)
    assert any(r["auth"].startswith("Basic ") and
               "repository:public/tokened:pull,push" in r["query"].get("scope", [])
               for r in tokens.requests)
    (docker_config / "config.json").unlink()  # anonymous again: public/ may be pulled
    tokens.requests.clear()
    assert ImageStore(tmp_path / "fresh").pull(ref) == two_layer_image
    assert tokens.requests and all(r["auth"] == "" for r in tokens.requests)
    private = f"{server.netloc}/private/tokened:1"
    with pytest.raises(Unauthorized, match=rf"registry {server.netloc}"):
        ImageStore(tmp_path / "fresh2").pull(private)
