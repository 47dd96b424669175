"""Waits on fds numbered 1024 and up (select(2) cannot), as a long pytest process has them."""

from __future__ import annotations

import os
import resource
import socket

import pytest

from pytest_isobox.native.engine.support import collect_ready
from pytest_isobox.plugin.wait import probe_tcp


@pytest.fixture
def high_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        pytest.skip(f"the hard fd limit ({hard}) is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        yield
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_readiness_probe_works_on_a_socket_numbered_above_1024(high_fds) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        probe_tcp("127.0.0.1", server.getsockname()[1])


def test_exec_output_is_collected_from_pipes_numbered_above_1024(high_fds) -> None:
    r, w = os.pipe()
    assert r > 1024
    os.write(w, b"out")
    os.close(w)
    assert collect_ready({r: bytearray()}) == {r: bytearray(b"out")}
