"""A real `isobox serve` on a unix socket in the test's directory, with the busybox rootfs
imported as `busybox:test` in its private home; killed by pid at the end."""

from __future__ import annotations

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


@pytest.fixture
def served(tmp_path: Path, isobox_home: Path, busybox_rootfs: Path) -> Iterator[str]:
    """The DOCKER_HOST of a server started for this test."""
    if os.geteuid() != 0:
        pytest.skip("needs root (the native engine, rootful)")
    subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "import", str(busybox_rootfs),
                    SERVE_IMAGE], check=True, capture_output=True)
    sock = tmp_path / "docker.sock"
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "pytest_isobox.server", "-H",
                             f"unix://{sock}", "--home", str(isobox_home)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, tmp_path / "serve.log")
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


__all__ = ["SERVE_IMAGE", "needs_root"]
