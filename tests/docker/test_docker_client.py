"""The client over tcp:// (DOCKER_HOST), through a relay to the daemon's unix socket."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest

from pytest_isobox.docker.address import DEFAULT_SOCKET
from pytest_isobox.docker.engine import DockerEngine
from pytest_isobox.engine import ContainerSpec
from tests.conftest import needs_docker
from tests.docker.conftest import Made

pytestmark = [needs_docker, pytest.mark.skipif(
    os.environ.get("ISOBOX_TEST_DOCKER_TARGET", "local") != "local",
    reason="relays to the local daemon's socket")]


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@pytest.fixture
def tcp_relay() -> Iterator[str]:
    """tcp://127.0.0.1:PORT forwarding each connection to the local Docker socket."""
    server = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []
    sockets: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(DEFAULT_SOCKET)
            sockets.extend([client, upstream])
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=_pipe, args=(a, b), daemon=True)
                t.start()
                threads.append(t)

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed by its peer
            pass
        s.close()
    acceptor.join(timeout=10)
    for t in threads:
        t.join(timeout=10)


def test_engine_over_tcp_from_docker_host(made: Made, tcp_relay: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", tcp_relay)
    engine = DockerEngine()
    try:
        assert engine.client.base_url == tcp_relay
        name = f"isobox-test-tcp-{engine.session[:8]}"
        made.containers.append(name)
        state = engine.run(ContainerSpec(image=made.image, name=name,
                                         command=["sh", "-c", "echo via tcp; sleep 60"]))
        result = engine.exec(state.id, ["sh", "-c", "echo out; echo err >&2; exit 2"])
        assert (result.exit_code, result.stdout, result.stderr) == (2, b"out\n", b"err\n")
        engine.kill(state.id)
        assert engine.wait(state.id, timeout=30) == 137
        assert b"".join(d for _, d in engine.logs(state.id)) == b"via tcp\n"
    finally:
        engine.close()
