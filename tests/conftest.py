"""Fixtures shared by every test module: a busybox rootfs, a private isobox home, prerequisites."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
BUSYBOX_ROOTFS_TOOL = SHARED / "tools" / "busybox-rootfs"
LEAKCHECK = SHARED / "tools" / "leakcheck"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (native engine, rootful)")


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


needs_docker = pytest.mark.skipif(not docker_available(), reason="no Docker daemon answers")


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal root filesystem (static busybox, /etc/passwd, /etc/group), read-only by use."""
    dest = tmp_path_factory.mktemp("busybox") / "rootfs"
    if BUSYBOX_ROOTFS_TOOL.exists():
        subprocess.run([str(BUSYBOX_ROOTFS_TOOL), str(dest)], check=True, capture_output=True)
    else:  # a copy of the same recipe, for running outside the workspace
        subprocess.run([str(REPO / "fixtures" / "busybox-rootfs"), str(dest)], check=True,
                       capture_output=True)
    return dest


@pytest.fixture(autouse=True)
def _offline_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches a real registry by accident (an image name not in the store would be
    pulled from Docker Hub): ISOBOX_OFFLINE=1 unless a registry test lifts it for its own
    registry on loopback."""
    monkeypatch.setenv("ISOBOX_OFFLINE", "1")


@pytest.fixture
def isobox_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private store for one test, so tests never share images, containers or caches."""
    home = tmp_path / "isobox-home"
    home.mkdir()
    monkeypatch.setenv("ISOBOX_HOME", str(home))
    return home
