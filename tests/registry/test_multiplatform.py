"""An image index pushed by skopeo (a real third-party client): the platform is chosen,
attestation manifests are skipped, zstd and gzip layers are decompressed; and platform
choice as a pure function."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from pytest_isobox.images import config as oci
from pytest_isobox.images.registry.errors import NoMatchingPlatform
from pytest_isobox.images.registry.platforms import choose
from pytest_isobox.images.registry.transport import parse_challenge
from pytest_isobox.images.store import ImageStore
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


def _layout(root: Path) -> dict[str, bytes]:
    """An OCI layout with an index: this machine's arch (zstd + gzip layers), arm64 (s390x
    on arm hosts) and an attestation manifest. Returns the host image's config and tars."""
    zstandard = pytest.importorskip("zstandard")
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        digest = _digest(data)
        (blobs / digest[7:]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    def image(arch: str, text: bytes) -> tuple[dict, bytes, list[bytes]]:
        tars = [_tar("etc/which", text), _tar("etc/more", b"second layer\n")]
        layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
                   **put(zstandard.ZstdCompressor().compress(tars[0]))},
                  {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   **put(gzip.compress(tars[1]))}]
        config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                             "rootfs": {"type": "layers",
                                        "diff_ids": [_digest(t) for t in tars]}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": oci.MEDIA_MANIFEST,
                               "config": {"mediaType": oci.MEDIA_CONFIG, **put(config)},
                               "layers": layers}).encode()
        return {"mediaType": oci.MEDIA_MANIFEST, **put(manifest),
                "platform": {"os": "linux", "architecture": arch}}, config, tars

    host = oci.go_arch()
    other = "s390x" if host == "arm64" else "arm64"
    mine, config, tars = image(host, b"host\n")
    theirs, _, _ = image(other, b"other\n")
    attestation = {**image(host, b"attestation\n")[0],
                   "platform": {"os": "unknown", "architecture": "unknown"},
                   "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
    index = json.dumps({"schemaVersion": 2, "mediaType": oci.MEDIA_INDEX,
                        "manifests": [attestation, theirs, mine]}).encode()
    (root / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "manifests": [{"mediaType": oci.MEDIA_INDEX, **put(index),
                                           "annotations": {
                                               "org.opencontainers.image.ref.name": "multi"}}]}))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return {"config": config, "tar0": tars[0], "tar1": tars[1]}


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_an_index_skopeo_pushed_pulls_this_platform(registry: Registry, store: ImageStore,
                                                    tmp_path: Path) -> None:
    expected = _layout(tmp_path / "layout")
    ref = f"{registry.netloc}/isobox/multi:1"
    done = subprocess.run(["skopeo", "--insecure-policy", "copy", "--all", "--quiet",
                           "--dest-tls-verify=false", f"oci:{tmp_path / 'layout'}:multi",
                           f"docker://{ref}"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    image_id = store.pull(ref)
    assert image_id == _digest(expected["config"])
    assert store.blobs.read_bytes(_digest(expected["tar0"])) == expected["tar0"]  # zstd
    assert store.blobs.read_bytes(_digest(expected["tar1"])) == expected["tar1"]  # gzip
    dirs = store.layer_dirs(image_id)
    assert (dirs[0] / "etc" / "which").read_bytes() == b"host\n"


def test_platform_choice_lists_what_is_available() -> None:
    host = oci.go_arch()
    index = {"manifests": [
        {"digest": "a", "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": "b", "platform": {"os": "windows", "architecture": host}},
        {"digest": "c", "platform": {"os": "linux", "architecture": host}},
    ]}
    assert choose(index, "x")["digest"] == "c"
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
