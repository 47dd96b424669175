"""Archives cross between isobox and a real Docker daemon, both ways.

Skipped when no daemon answers. Every Docker image a test makes has a unique name and is
removed at the end, pass or fail.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.images.store import ImageStore
from tests.conftest import needs_docker, needs_root

pytestmark = [needs_docker, needs_root, pytest.mark.docker]


def _docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], check=False, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture
def docker_names() -> Iterator[list[str]]:
    """Names for Docker images; each is removed after the test."""
    names: list[str] = []
    yield names
    for name in reversed(names):
        _docker("rmi", "--force", name, check=False)


def _unique(docker_names: list[str], what: str) -> str:
    name = f"isobox-test-{what}-{uuid.uuid4().hex[:10]}:1"
    docker_names.append(name)
    return name


def test_docker_loads_and_runs_what_isobox_saves(store: ImageStore, busybox_image: str,
                                                 busybox_rootfs: Path, tmp_path: Path,
                                                 docker_names: list[str]) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "motd").write_text("from isobox\n")
    name = _unique(docker_names, "saved")
    image_id = store.commit(busybox_image, upper, {"Cmd": ["cat", "/etc/passwd"]}, "COPY motd")
    store.tag(image_id, name)
    store.save([name], tmp_path / "image.tar")
    assert f"Loaded image: {name}" in _docker("load", "-i", str(tmp_path / "image.tar"))
    assert _docker("image", "inspect", "--format", "{{.Id}}", name).strip() == image_id
    expected = (busybox_rootfs / "etc" / "passwd").read_text()
    assert _docker("run", "--rm", name) == expected
    assert _docker("run", "--rm", name, "cat", "/etc/motd") == "from isobox\n"


def test_isobox_loads_what_docker_saves_with_its_deletions(store: ImageStore,
                                                           busybox_rootfs: Path, tmp_path: Path,
                                                           docker_names: list[str]) -> None:
    base, built = _unique(docker_names, "base"), _unique(docker_names, "built")
    rootfs_tar = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs_tar, "w") as tar:
        tar.add(busybox_rootfs, arcname=".")
    _docker("import", str(rootfs_tar), base)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {base}\nRUN echo hi > /f && rm /etc/group && rm -rf /var && mkdir -p /var/new\n")
    subprocess.run(["docker", "build", "-q", "-t", built, str(context)], check=True,
                   capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    _docker("save", "-o", str(tmp_path / "saved.tar"), built)
    docker_id = _docker("image", "inspect", "--format", "{{.Id}}", built).strip()

    assert store.load(tmp_path / "saved.tar") == [built]
    image = store.resolve(built)
    assert image.id == docker_id
    base_dir, top = store.layer_dirs(built)
    for chain_id, diff_id in zip(image.chain_ids, image.diff_ids):
        assert store.layers.differences(chain_id, diff_id) == []
    assert (top / "f").read_text() == "hi\n"
    assert Path(top / "etc" / "group").lstat().st_rdev == 0  # a whiteout, not a file
    assert os.getxattr(top / "var", "trusted.overlay.opaque") == b"y"
    assert (base_dir / "etc" / "group").is_file() and (base_dir / "var" / "tmp").is_dir()
    script = (f"mkdir -p {tmp_path}/m && mount -t overlay overlay -o lowerdir={top}:{base_dir} "
              f"{tmp_path}/m && cd {tmp_path}/m && cat f && ls etc && echo --- && ls var")
    shown = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                           text=True, check=True).stdout
    files, _, var = shown.partition("---\n")
    assert files.split() == ["hi", "passwd"]
    assert var.split() == ["new"]
