"""An image index pushed by skopeo (a real third-party client) with `copy --all`: `isobox
pull` chooses this host's platform (the image runs), attestation manifests are skipped, zstd
and gzip layers are decompressed, a platform the index lacks is one line listing those it
has; and platform choice as a pure function."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.images import config as oci
from pytest_isobox.images.registry.errors import NoMatchingPlatform
from pytest_isobox.images.registry.platforms import choose
from pytest_isobox.images.registry.transport import parse_challenge
from pytest_isobox.images.store import ImageStore
from tests.conftest import needs_docker, needs_root
from tests.registry.servers import Registry


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class _Layout:
    """An OCI image layout being written: blobs by digest, then index.json."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True)

    def put(self, data: bytes) -> dict:
        digest = _digest(data)
        (self.blobs / digest[7:]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    def image(self, arch: str, layers: list[tuple[str, bytes, bytes]], cmd: list[str]) -> dict:
        """A manifest for (media type, tar, compressed) layers; its index descriptor."""
        config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": cmd},
                             "rootfs": {"type": "layers",
                                        "diff_ids": [_digest(t) for _, t, _ in layers]}})
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": oci.MEDIA_MANIFEST,
            "config": {"mediaType": oci.MEDIA_CONFIG, **self.put(config.encode())},
            "layers": [{"mediaType": media, **self.put(packed)} for media, _, packed in layers],
        }).encode()
        return {"mediaType": oci.MEDIA_MANIFEST, **self.put(manifest),
                "platform": {"os": "linux", "architecture": arch}}

    def finish(self, manifests: list[dict], name: str) -> None:
        index = json.dumps({"schemaVersion": 2, "mediaType": oci.MEDIA_INDEX,
                            "manifests": manifests}).encode()
        (self.root / "index.json").write_text(json.dumps({
            "schemaVersion": 2, "manifests": [{
                "mediaType": oci.MEDIA_INDEX, **self.put(index),
                "annotations": {"org.opencontainers.image.ref.name": name}}]}))
        (self.root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


@pytest.fixture
def multi_layout(tmp_path: Path, busybox_rootfs: Path) -> tuple[Path, dict]:
    """An OCI layout holding an index of two platforms and an attestation manifest:
    this host's (runnable: busybox in a gzip layer, /etc/which in a zstd one), another
    (linux/arm64, or linux/amd64 on an arm64 host), and a buildx-style attestation
    (platform unknown/unknown) listed first. Returns the layout and what each holds."""
    return _make_layout(tmp_path, busybox_rootfs, docker_format=False)


def _make_layout(tmp_path: Path, busybox_rootfs: Path, *,
                 docker_format: bool) -> tuple[Path, dict]:
    """`docker_format`: only what Docker's schema 2 can carry (gzip, no attestation)."""
    zstandard = pytest.importorskip("zstandard")
    scratch = ImageStore(tmp_path / "scratch")
    base = scratch.resolve(scratch.import_rootfs(busybox_rootfs, None))
    busybox_tar = scratch.blobs.read_bytes(base.diff_ids[0])
    host = oci.go_arch()
    other = "amd64" if host == "arm64" else "arm64"
    layout = _Layout(tmp_path / "layout")
    which = _tar("etc/which", f"linux/{host}\n".encode())
    mine = layout.image(host, [
        ("application/vnd.oci.image.layer.v1.tar+gzip", busybox_tar,
         gzip.compress(busybox_tar, compresslevel=1)),
        ("application/vnd.oci.image.layer.v1.tar+zstd", which,
         zstandard.ZstdCompressor().compress(which)) if not docker_format else
        ("application/vnd.oci.image.layer.v1.tar+gzip", which, gzip.compress(which))],
        ["cat", "/etc/which"])
    other_tar = _tar("etc/which", f"linux/{other}\n".encode())
    theirs = layout.image(other, [("application/vnd.oci.image.layer.v1.tar+gzip", other_tar,
                                   gzip.compress(other_tar))], ["cat", "/etc/which"])
    statement = b'{"_type": "https://in-toto.io/Statement/v0.1"}'
    attestation = {**layout.image("unknown", [("application/vnd.in-toto+json", statement,
                                               statement)], []),
                   "platform": {"os": "unknown", "architecture": "unknown"},
                   "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                   "vnd.docker.reference.digest": mine["digest"]}}
    layout.finish([mine, theirs] if docker_format else [attestation, mine, theirs], "multi")
    return layout.root, {"host": host, "other": other, "mine": mine, "theirs": theirs,
                         "attestation": attestation, "which": which,
                         "busybox": busybox_tar}


def _isobox(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_isobox.cli", *args],
                          env={**os.environ, "ISOBOX_HOME": str(home)},
                          capture_output=True, text=True, check=False)


@needs_root
@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_an_index_skopeo_pushed_pulls_this_platform_and_runs(
        registry: Registry, docker_config: Path, multi_layout: tuple[Path, dict],
        tmp_path: Path) -> None:
    root, parts = multi_layout
    repo = f"isobox/multi-{os.urandom(3).hex()}"
    ref = f"{registry.netloc}/{repo}:1"
    done = subprocess.run(["skopeo", "--insecure-policy", "copy", "--all", "--quiet",
                           "--dest-tls-verify=false", f"oci:{root}:multi", f"docker://{ref}"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    home = tmp_path / "home"
    pulled = _isobox("pull", ref, home=home)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout == f"{ref}\n"
    manifests = f"/v2/{repo}/manifests/"
    assert registry.served("GET", manifests + parts["mine"]["digest"]) == 1
    assert registry.served("GET", manifests + parts["theirs"]["digest"]) == 0
    assert registry.served("GET", manifests + parts["attestation"]["digest"]) == 0
    store = ImageStore(home)
    image = store.resolve(ref)
    assert image.config["architecture"] == parts["host"]
    assert store.blobs.read_bytes(_digest(parts["busybox"])) == parts["busybox"]  # gzip
    assert store.blobs.read_bytes(_digest(parts["which"])) == parts["which"]  # zstd
    ran = _isobox("run", "--rm", ref, home=home)
    assert (ran.returncode, ran.stdout) == (0, f"linux/{parts['host']}\n"), ran.stderr
    ran = _isobox("run", "--rm", ref, "sh", "-c", "echo busybox ran", home=home)
    assert (ran.returncode, ran.stdout) == (0, "busybox ran\n"), ran.stderr

    # a platform the index does not hold: one line listing those it does (no attestation)
    missing = _isobox("pull", "--platform", "linux/s390x", ref, home=tmp_path / "s390x")
    assert missing.returncode == 1
    available = ", ".join(sorted([f"linux/{parts['host']}", f"linux/{parts['other']}"]))
    assert missing.stderr.splitlines() == [
        f"isobox: {ref}: no manifest for linux/s390x (available: {available})"]
    # another platform the index holds is pulled when asked for, as docker pull --platform
    other_home = tmp_path / "other"
    assert _isobox("pull", "-q", "--platform", f"linux/{parts['other']}", ref,
                   home=other_home).returncode == 0
    assert ImageStore(other_home).resolve(ref).config["architecture"] == parts["other"]
    assert registry.served("GET", manifests + parts["attestation"]["digest"]) == 0


@needs_docker
@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_the_docker_engine_pulls_the_index_for_a_platform(
        registry: Registry, docker_config: Path, busybox_rootfs: Path, tmp_path: Path) -> None:
    """--engine docker: the daemon picks the host's manifest (the image runs there); a
    platform the index lacks is one line; --platform reaches the daemon. (gzip layers only:
    Docker 20.10 cannot unpack zstd ones.)"""
    root, parts = _make_layout(tmp_path, busybox_rootfs, docker_format=True)
    repo = f"isobox/multi-docker-{os.urandom(3).hex()}"
    ref = f"{registry.netloc}/{repo}:1"
    done = subprocess.run(["skopeo", "--insecure-policy", "copy", "--all", "--quiet",
                           "--dest-tls-verify=false", f"oci:{root}:multi", f"docker://{ref}"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    try:
        missing = _isobox("--engine", "docker", "pull", "--platform", "linux/s390x", ref,
                          home=tmp_path)
        assert missing.returncode == 1
        assert len(missing.stderr.splitlines()) == 1, missing.stderr
        assert ref.split(":1")[0] in missing.stderr and "linux/s390x" in missing.stderr
        pulled = _isobox("--engine", "docker", "pull", "-q", ref, home=tmp_path)
        assert pulled.returncode == 0, pulled.stderr
        ran = subprocess.run(["docker", "run", "--rm", ref], capture_output=True, text=True,
                             check=False)
        assert (ran.returncode, ran.stdout) == (0, f"linux/{parts['host']}\n"), ran.stderr
        assert registry.served("GET", f"/v2/{repo}/manifests/" + parts["mine"]["digest"]) == 1
        assert registry.served("GET", f"/v2/{repo}/manifests/"
                               + parts["theirs"]["digest"]) == 0
    finally:
        subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)


@needs_root
@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_a_docker_manifest_list_pulls_this_platform(registry: Registry, docker_config: Path,
                                                    busybox_rootfs: Path, tmp_path: Path) -> None:
    """The index (without its attestation, which schema 2 cannot carry) converted by skopeo to
    Docker's schema 2: a manifest list of schema 2 manifests; the host's manifest is chosen."""
    root, parts = _make_layout(tmp_path, busybox_rootfs, docker_format=True)
    repo = f"isobox/list-{os.urandom(3).hex()}"
    ref = f"{registry.netloc}/{repo}:1"
    done = subprocess.run(["skopeo", "--insecure-policy", "copy", "--all", "--quiet",
                           "--format", "v2s2", "--dest-tls-verify=false", f"oci:{root}:multi",
                           f"docker://{ref}"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    home = tmp_path / "home"
    pulled = _isobox("pull", ref, home=home)
    assert pulled.returncode == 0, pulled.stderr
    manifests = f"/v2/{repo}/manifests/"
    assert registry.served("GET", manifests + "1") == 1
    ran = _isobox("run", "--rm", ref, home=home)
    assert (ran.returncode, ran.stdout) == (0, f"linux/{parts['host']}\n"), ran.stderr
    assert _media_type(registry, repo) == \
        "application/vnd.docker.distribution.manifest.list.v2+json"


def _media_type(registry: Registry, repo: str) -> str:
    """The Content-Type the registry serves the tag as (GET with our Accept)."""
    import http.client

    from pytest_isobox.images.registry.client import ACCEPT

    conn = http.client.HTTPConnection(registry.host, registry.port, timeout=10)
    try:
        conn.request("GET", f"/v2/{repo}/manifests/1", headers={"Accept": ACCEPT})
        resp = conn.getresponse()
        resp.read()
        return resp.headers.get("Content-Type", "")
    finally:
        conn.close()


def test_platform_choice_lists_what_is_available() -> None:
    host = oci.go_arch()
    index = {"manifests": [
        {"digest": "a", "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": "b", "platform": {"os": "windows", "architecture": host}},
        {"digest": "c", "platform": {"os": "linux", "architecture": host}},
    ]}
    assert choose(index, "x")["digest"] == "c"
    assert choose(index, "x", f"windows/{host}")["digest"] == "b"
    assert choose(index, "x", host)["digest"] == "c"  # an arch alone means linux/arch
    with pytest.raises(InvalidSpec, match=r"invalid platform 'linux/arm/v7/x': expected "
                                          r"os/arch\[/variant\]"):
        choose(index, "x", "linux/arm/v7/x")
    with pytest.raises(NoMatchingPlatform, match=rf"x: no manifest for linux/{host}.* "
                                                 r"\(available: linux/mips64le, windows/"):
        choose({"manifests": [index["manifests"][0], index["manifests"][1],
                              {"digest": "d", "platform": {"os": "linux",
                                                           "architecture": "mips64le"}}]}, "x")


def test_challenges_parse_as_docker_sends_them() -> None:
    bearer = parse_challenge('Bearer realm="https://auth.docker.io/token",'
                             'service="registry.docker.io",scope="repository:library/x:pull"')
    assert bearer is not None and bearer.scheme == "bearer"
    assert bearer.params == {"realm": "https://auth.docker.io/token",
                             "service": "registry.docker.io",
                             "scope": "repository:library/x:pull"}
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic"
    assert parse_challenge("Negotiate abc") is None
