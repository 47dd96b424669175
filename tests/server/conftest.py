"""A real `isobox serve` on a unix socket in the test's directory, with the busybox rootfs
imported as `busybox:test` in its private home; killed by pid at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import needs_root

SERVE_IMAGE = "busybox:test"


@contextlib.contextmanager
def serve(tmp_path: Path, isobox_home: Path, busybox_rootfs: Path, *args: str,
          name: str = "docker.sock") -> Iterator[str]:
    """`isobox serve` on a unix socket in `tmp_path` (extra `args` to it), busybox imported
    into its home; stopped at the end, and then its home must have no container left."""
    if os.geteuid() != 0:
        pytest.skip("needs root (the native engine, rootful)")
    subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "import", str(busybox_rootfs),
                    SERVE_IMAGE], check=True, capture_output=True)
    sock = tmp_path / name
    log_path = tmp_path / f"{name}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "pytest_isobox.server", "-H",
                             f"unix://{sock}", "--home", str(isobox_home), *args],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, log_path)
        yield f"unix://{sock}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    containers = isobox_home / "containers"
    left = [p.name for p in containers.iterdir() if not p.name.startswith(".")] \
        if containers.exists() else []
    assert not left, f"isobox serve left containers behind: {left}"


@pytest.fixture
def served(tmp_path: Path, isobox_home: Path, busybox_rootfs: Path) -> Iterator[str]:
    """The DOCKER_HOST of a server started for this test."""
    with serve(tmp_path, isobox_home, busybox_rootfs) as host:
        yield host


@pytest.fixture
def client(served: str):
    """docker-py on this test's server; its containers removed at the end."""
    docker = pytest.importorskip("docker")
    c = docker.DockerClient(base_url=served, timeout=60)
    yield c
    for container in c.containers.list(all=True):
        container.remove(force=True)
    c.close()


def _wait_listening(proc: subprocess.Popen, log: Path) -> None:
    """Until the server says it listens (it prints that once the socket is bound)."""
    import select

    deadline = time.monotonic() + 60
    while b"API listening" not in log.read_bytes():
        if proc.poll() is not None:
            raise AssertionError(f"isobox serve exited: {log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"isobox serve never listened: {log.read_text()}")
        select.select([], [], [], 0.05)  # a short poll of the log the server writes


__all__ = ["SERVE_IMAGE", "needs_root", "serve"]
