"""Real registries for the tests: Debian's `docker-registry` on 127.0.0.1, made by the test.

`Registry.start` writes a config (storage in a temp dir; optionally htpasswd Basic auth, TLS
from a CA the test makes, or Bearer token auth trusting a test token server's certificate),
starts the binary, and waits until `GET /v2/` answers. Its access log (stderr) is kept, so a
test can count the requests the registry served.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(*argv: str, cwd: Path | None = None) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, cwd=cwd)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()}"


def make_ca(folder: Path, hostname: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key): a CA and a server certificate for `hostname`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=isobox test CA", "-keyout", str(ca_key), "-out", str(ca_crt))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={hostname}",
        "-keyout", str(key), "-out", str(csr))
    san = folder / "san.ext"
    kind = "IP" if hostname.replace(".", "").isdigit() else "DNS"
    san.write_text(f"subjectAltName={kind}:{hostname}\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(san), "-out", str(crt))
    return ca_crt, crt, key


def make_client_cert(folder: Path, ca_crt: Path, ca_key: Path,
                     name: str = "client") -> tuple[Path, Path]:
    """(name.cert, name.key): a client certificate from the CA, named as certs.d wants."""
    key, csr, crt = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.cert"
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=isobox test client",
        "-keyout", str(key), "-out", str(csr))
    ext = folder / f"{name}.ext"
    ext.write_text("extendedKeyUsage=clientAuth\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return crt, key


@dataclass
class Registry:
    """A running docker-registry; `netloc` is `127.0.0.1:<port>` (or the address given)."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 0
    htpasswd: Path | None = None
    tls: tuple[Path, Path] | None = None  # (cert, key)
    token: dict | None = None  # {"realm", "service", "issuer", "bundle"}
    netns: str | None = None
    client_ca: Path | None = None  # TLS clients must show a certificate from this CA
    client_cert: tuple[Path, Path] | None = None  # (cert, key) the readiness probe shows
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "registry.log"

    def start(self, ca: Path | None = None) -> Registry:
        self.port = self.port or free_port()
        config: dict = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.netloc, "secret": "isobox-test"},
        }
        if self.tls:
            config["http"]["tls"] = {"certificate": str(self.tls[0]), "key": str(self.tls[1])}
            if self.client_ca:
                config["http"]["tls"]["clientcas"] = [str(self.client_ca)]
        if self.htpasswd:
            config["auth"] = {"htpasswd": {"realm": "isobox-test", "path": str(self.htpasswd)}}
        if self.token:
            config["auth"] = {"token": {"realm": self.token["realm"],
                                        "service": self.token["service"],
                                        "issuer": self.token["issuer"],
                                        "rootcertbundle": str(self.token["bundle"])}}
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "config.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        argv = [REGISTRY_BIN, "serve", str(path)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(ca)
        return self

    def _wait_ready(self, ca: Path | None) -> None:
        deadline = time.monotonic() + 30
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"docker-registry exited: {self.log_path.read_text()}")
            try:
                if self.tls:
                    context = ssl.create_default_context(cafile=str(ca) if ca else None)
                    if self.client_cert:
                        context.load_cert_chain(*map(str, self.client_cert))
                    conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                        self.host, self.port, timeout=2, context=context)
                else:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                conn.close()
                if status in (200, 401):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"docker-registry did not answer: {self.log_path.read_text()}")
            time.sleep(0.05)  # polling a condition (the port answering), not papering over a race

    def blob_gets(self, repo: str, digest: str) -> int:
        """How many GETs of this blob of `repo` the registry answered 200/206 (access log)."""
        count = 0
        for line in self.log_path.read_text(errors="replace").splitlines():
            if f'"GET /v2/{repo}/blobs/{digest} ' in line and (
                    '" 200 ' in line or '" 206 ' in line):
                count += 1
        return count

    def blob_requests(self) -> int:
        """Blob downloads served so far, of any repository (GETs answered 200 or 206)."""
        return sum(1 for line in self.log_path.read_text(errors="replace").splitlines()
                   if '"GET /v2/' in line and "/blobs/sha256:" in line
                   and ('" 200 ' in line or '" 206 ' in line))

    def served(self, method: str, path: str) -> int:
        """How many `method path` requests the registry answered 2xx (access log)."""
        return sum(1 for line in self.log_path.read_text(errors="replace").splitlines()
                   if f'"{method} {path} ' in line and _success(line))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _success(line: str) -> bool:
    after = line.split('" ', 1)[1] if '" ' in line else ""
    return after[:1] == "2"


def have_registry() -> bool:
    return Path(REGISTRY_BIN).is_file() and shutil.which("openssl") is not None
