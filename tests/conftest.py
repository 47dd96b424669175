"""Fixtures shared by every test module: a busybox rootfs, a private isobox home, prerequisites."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
BUSYBOX_ROOTFS_TOOL = REPO / "fixtures" / "busybox-rootfs"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (native engine, rootful)")


def system_check(*args: str) -> subprocess.CompletedProcess:
    """`isobox system check ARGS` (the leak check), its output as text."""
    import sys

    return subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "system", "check", *args],
                          capture_output=True, text=True, check=False)


def docker_available() -> bool:
    """A local daemon answers, or tests/docker runs against a daemon its fixtures start
    (ISOBOX_TEST_DOCKER_TARGET=remote or podman; they skip when they cannot)."""
    if os.environ.get("ISOBOX_TEST_DOCKER_TARGET", "local") != "local":
        return True
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


needs_docker = pytest.mark.skipif(not docker_available(), reason="no Docker daemon answers")


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal root filesystem (static busybox, /etc/passwd, /etc/group), read-only by use."""
    dest = tmp_path_factory.mktemp("busybox") / "rootfs"
    subprocess.run([str(BUSYBOX_ROOTFS_TOOL), str(dest)], check=True, capture_output=True)
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
