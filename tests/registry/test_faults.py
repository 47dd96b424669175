"""Faults a real registry does not make on demand, from a small registry written here:
a tampered blob, a connection dropped mid-blob (resumed with Range), a redirect to blob
storage on another host (no Authorization there), a pull killed with SIGKILL."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_isobox.images.blobs import CorruptedBlob
from pytest_isobox.images.store import ImageStore


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class FakeRegistry:
    """Serves one image `test/app:1` (one gzip layer of ~1 MB of random data, `extra_layers`
    more of 64 KiB).

    Knobs: `barrier` (a threading.Barrier: each layer GET waits there for the others, so a
    pull fetching layers one by one gets a 500), `tamper` (serve the layer with one byte changed), `drop_at` (close the connection
    after that many layer bytes, once), `redirect_to` (another FakeRegistry's base URL: blob
    GETs redirect there), `stall` (an Event: the layer stops half-way until it is set),
    `password` (Basic auth required). `seen` records (path, Authorization, Range).
    """

    def __init__(self, extra_layers: int = 0) -> None:
        self.tar = _layer({"data/blob.bin": os.urandom(1 << 20), "data/hello": b"hi\n"})
        self.layer = gzip.compress(self.tar, compresslevel=1)
        extra_tars = [_layer({f"data/extra{i}": os.urandom(1 << 16)})
                      for i in range(extra_layers)]
        extras = [gzip.compress(t, compresslevel=1) for t in extra_tars]
        self.layer_digests = {_digest(c) for c in [self.layer, *extras]}
        config = {"architecture": "amd64", "os": "linux",
                  "config": {"Cmd": ["cat", "/data/hello"]},
                  "rootfs": {"type": "layers",
                             "diff_ids": [_digest(t) for t in [self.tar, *extra_tars]]}}
        self.config = json.dumps(config).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": _digest(self.config), "size": len(self.config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": _digest(c), "size": len(c)} for c in [self.layer, *extras]],
        }).encode()
        self.blobs = {_digest(self.config): self.config, _digest(self.layer): self.layer,
                      **{_digest(c): c for c in extras}}
        self.barrier: threading.Barrier | None = None
        self.accepts: list[tuple[str, str]] = []  # (path, Accept) of manifest requests
        self.tamper = False
        self.drop_at: int | None = None
        self.redirect_to: str | None = None
        self.stall: threading.Event | None = None
        self.stalled = threading.Event()
        self.password: str | None = None
        self.seen: list[tuple[str, str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake.serve(self)

            def do_HEAD(self) -> None:
                fake.serve(self, head=True)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.netloc = f"127.0.0.1:{self.httpd.server_port}"

    def serve(self, req: BaseHTTPRequestHandler, head: bool = False) -> None:
        path = req.path.split("?")[0]
        self.seen.append((path, req.headers.get("Authorization", ""),
                          req.headers.get("Range", "")))
        if self.password and not path.startswith("/storage/"):
            wanted = "Basic " + base64.b64encode(f"u:{self.password}".encode()).decode()
            if req.headers.get("Authorization") != wanted:
                req.send_response(401)
                req.send_header("WWW-Authenticate", 'Basic realm="fake"')
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
        if path == "/v2/":
            return self._send(req, b"{}", "application/json", head)
        if path == "/v2/test/app/manifests/1":
            self.accepts.append((path, req.headers.get("Accept", "")))
            return self._send(req, self.manifest, "application/vnd.oci.image.manifest.v1+json",
                              head)
        digest = path.rpartition("/")[2]
        if digest not in self.blobs:
            req.send_response(404)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        if self.redirect_to and path.startswith("/v2/"):
            req.send_response(307)
            req.send_header("Location", f"{self.redirect_to}/storage/{digest}")
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        if self.barrier is not None and digest in self.layer_digests:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                req.send_response(500)
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
        data = self.blobs[digest]
        if digest == _digest(self.layer):
            if self.tamper:
                data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
            start = 0
            if req.headers.get("Range", "").startswith("bytes="):
                start = int(req.headers["Range"][6:].split("-")[0])
            body = data[start:]
            req.send_response(206 if start else 200)
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            cut = len(body)
            if self.drop_at is not None and not start:
                cut, self.drop_at = self.drop_at, None
            if self.stall is not None and not start:
                half = len(body) // 2
                req.wfile.write(body[:half])
                req.wfile.flush()
                self.stalled.set()
                self.stall.wait(60)
                return
            req.wfile.write(body[:cut])
            req.wfile.flush()
            if cut < len(body):
                req.close_connection = True
            return
        self._send(req, data, "application/octet-stream", head)

    def _send(self, req: BaseHTTPRequestHandler, data: bytes, media: str, head: bool) -> None:
        req.send_response(200)
        req.send_header("Content-Type", media)
        req.send_header("Content-Length", str(len(data)))
        req.send_header("Docker-Content-Digest", _digest(data))
        req.end_headers()
        if not head:
            req.wfile.write(data)

    def stop(self) -> None:
        if self.stall is not None:
            self.stall.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    try:
        yield server
    finally:
        server.stop()


def test_a_tampered_blob_is_refused_and_nothing_is_tagged(fake: FakeRegistry,
                                                         store: ImageStore) -> None:
    fake.tamper = True
    with pytest.raises(CorruptedBlob, match=r"test/app:1: layer sha256:[0-9a-f]{64}: content "
                                            r"has digest sha256:[0-9a-f]{64}, expected "
                                            r"sha256:[0-9a-f]{64} \(digest mismatch"):
        store.pull(f"{fake.netloc}/test/app:1")
    assert store.index.tags() == {}
    assert store.index.ids() == []
    assert not store.blobs.has(_digest(fake.tar))
    fake.tamper = False
    store.pull(f"{fake.netloc}/test/app:1")
    assert store.blobs.has(_digest(fake.tar))


def test_a_dropped_connection_resumes_with_range(fake: FakeRegistry, store: ImageStore) -> None:
    fake.drop_at = 300_000
    image_id = store.pull(f"{fake.netloc}/test/app:1")
    assert image_id == _digest(fake.config)
    layer_gets = [s for s in fake.seen if s[0].endswith(_digest(fake.layer))]
    assert [r for _, _, r in layer_gets] == ["", "bytes=300000-"]


def test_a_redirect_to_another_host_carries_no_authorization(fake: FakeRegistry,
                                                            store: ImageStore,
                                                            docker_config: Path) -> None:
    storage = FakeRegistry()
    try:
        storage.blobs = fake.blobs
        fake.password = "pw"
        fake.redirect_to = f"http://{storage.netloc}"
        auth = base64.b64encode(b"u:pw").decode()
        (docker_config / "config.json").write_text(json.dumps({"auths": {fake.netloc: {
            "auth": auth}}}))
        store.pull(f"{fake.netloc}/test/app:1")
        assert any(a == f"Basic {auth}" for _, a, _ in fake.seen)
        assert storage.seen and all(a == "" for _, a, _ in storage.seen)
    finally:
        storage.stop()


def test_kill_9_mid_pull_leaves_no_partial_blob_or_tag(fake: FakeRegistry, store: ImageStore,
                                                       isobox_home: Path) -> None:
    fake.stall = threading.Event()
    ref = f"{fake.netloc}/test/app:1"
    proc = subprocess.Popen([sys.executable, "-m", "pytest_isobox.cli", "pull", "-q", ref],
                            env={**os.environ, "ISOBOX_HOME": str(isobox_home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert fake.stalled.wait(60), "the pull never reached the layer"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    fake.stall.set()
    fake.stall = None
    assert ImageStore(isobox_home).index.tags() == {}
    assert not store.blobs.has(_digest(fake.tar))
    assert store.pull(ref) == _digest(fake.config)
    assert list((isobox_home / "tmp").iterdir()) == []  # the dead pull's temp file swept


def test_layers_download_in_parallel(store: ImageStore) -> None:
    """Three layers, each GET held until all three have arrived: a pull fetching them one
    after another would time out at the barrier and get a 500."""
    server = FakeRegistry(extra_layers=2)
    server.barrier = threading.Barrier(3, timeout=30)
    try:
        assert store.pull(f"{server.netloc}/test/app:1") == _digest(server.config)
        assert not server.barrier.broken
    finally:
        server.stop()


def test_manifests_are_asked_for_in_every_format_docker_and_oci_have(fake: FakeRegistry,
                                                                      store: ImageStore) -> None:
    store.pull(f"{fake.netloc}/test/app:1")
    assert fake.accepts
    for _, accept in fake.accepts:
        assert {a.strip() for a in accept.split(",")} == {
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json"}
