"""Readiness strategies against real servers on loopback, started by the test itself."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pytest_isobox import wait
from pytest_isobox.engine import ContainerState


@dataclass
class LoopbackTarget:
    """Stands in for a container: its 'published ports' are real sockets on 127.0.0.1."""

    name: str = "svc"
    ports: dict[str, int] = field(default_factory=dict)
    status: str = "running"
    exit_code: int | None = None
    log_text: str = ""
    exec_results: list[tuple[int, str]] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    executed: list = field(default_factory=list)
    direct: dict[int, int] = field(default_factory=dict)

    def poll_state(self) -> ContainerState:
        return ContainerState("id", self.name, "img", "sha256:x", self.status,
                              exit_code=self.exit_code)

    def published_ports(self) -> list[str]:
        return list(self.ports)

    def probe_addr(self, port: int | str) -> tuple[str, int]:
        key = str(port) if "/" in str(port) else f"{port}/tcp"
        return "127.0.0.1", self.ports[key]

    def direct_addr(self, port: int | str) -> tuple[str, int] | None:
        number = int(str(port).split("/")[0])
        return ("127.0.0.1", self.direct[number]) if number in self.direct else None

    def logs(self, *, tail: int | None = None) -> str:
        lines = self.log_text.splitlines(keepends=True)
        return "".join(lines[-tail:] if tail else lines)

    def exec(self, cmd: str | Sequence[str]) -> tuple[int, str]:
        self.executed.append(cmd)
        return self.exec_results.pop(0) if len(self.exec_results) > 1 else self.exec_results[0]

    def image_config(self) -> dict:
        return self.config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


@pytest.fixture
def http_server() -> Iterator[tuple[int, dict]]:
    answer = {"status": 503, "body": b"starting"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(answer["status"])
            self.end_headers()
            self.wfile.write(answer["body"])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], answer
    server.shutdown()
    server.server_close()
    thread.join()


def test_tcp_ready_when_listening(listener):
    target = LoopbackTarget(ports={"6379/tcp": listener.getsockname()[1]})
    assert wait.wait_until_ready(target, wait.tcp(6379), timeout=5) < 5


def test_tcp_timeout_says_what_and_last_error_and_logs():
    target = LoopbackTarget(ports={"6379/tcp": free_port()}, log_text="booting\nstill booting\n")
    with pytest.raises(wait.ReadinessTimeout) as info:
        wait.wait_until_ready(target, wait.tcp(6379), timeout=0.2)
    text = str(info.value)
    assert "not ready after 0.2 s" in text
    assert "a TCP connection to 6379/tcp" in text
    assert "Connection refused" in text
    assert text.endswith("still booting")


def test_server_must_listen_behind_a_relay(listener):
    """A port relay accepts even when no server listens: the container's own address decides."""
    target = LoopbackTarget(ports={"80/tcp": listener.getsockname()[1]}, direct={80: free_port()})
    with pytest.raises(wait.ReadinessTimeout, match="Connection refused"):
        wait.wait_until_ready(target, wait.ports(), timeout=0.1)
    target.direct = {80: listener.getsockname()[1]}
    wait.wait_until_ready(target, wait.tcp(80), timeout=1)


def test_default_checks_every_published_tcp_port(listener):
    target = LoopbackTarget(ports={"1/tcp": listener.getsockname()[1], "2/tcp": free_port(),
                                   "53/udp": free_port()})
    with pytest.raises(wait.ReadinessTimeout, match="port 2/tcp"):
        wait.wait_until_ready(target, wait.ports(), timeout=0.1)
    del target.ports["2/tcp"]
    wait.wait_until_ready(target, wait.ports(), timeout=1)


def test_no_ports_means_running_is_enough():
    assert wait.wait_until_ready(LoopbackTarget(), wait.ports(), timeout=1) < 1


def test_exited_container_fails_at_once_with_code_and_logs():
    target = LoopbackTarget(status="exited", exit_code=3, log_text="fatal: no config\n")
    with pytest.raises(wait.ContainerExited) as info:
        wait.wait_until_ready(target, wait.tcp(1), timeout=30)
    assert "exited with code 3" in str(info.value)
    assert "fatal: no config" in str(info.value)


def test_http_status_and_body(http_server):
    port, answer = http_server
    target = LoopbackTarget(ports={"8000/tcp": port})
    strategy = wait.http(8000, "/health", status=200, body="^ok$")
    with pytest.raises(wait.ReadinessTimeout, match="status 503: starting"):
        wait.wait_until_ready(target, strategy, timeout=0.1)
    answer.update(status=200, body=b"nope")
    with pytest.raises(wait.ReadinessTimeout, match="body does not match"):
        wait.wait_until_ready(target, strategy, timeout=0.1)
    answer.update(body=b"ok")
    wait.wait_until_ready(target, strategy, timeout=1)


def test_log_regex_and_times():
    target = LoopbackTarget(log_text="ready\n")
    with pytest.raises(wait.ReadinessTimeout, match="matched 1 of 2 times"):
        wait.wait_until_ready(target, wait.log(r"^ready$", times=2), timeout=0.05)
    target.log_text += "ready\n"
    wait.wait_until_ready(target, wait.log(r"^ready$", times=2), timeout=1)


def test_command_polls_until_exit_zero():
    target = LoopbackTarget(exec_results=[(1, "no\n"), (1, "no\n"), (0, "")])
    wait.wait_until_ready(target, wait.command("pg_isready"), timeout=5)
    assert target.executed == ["pg_isready"] * 3


def test_healthcheck_runs_the_image_test():
    target = LoopbackTarget(exec_results=[(0, "")],
                            config={"Healthcheck": {"Test": ["CMD-SHELL", "test -f /ok"]}})
    wait.wait_until_ready(target, wait.healthcheck(), timeout=1)
    assert target.executed == [("/bin/sh", "-c", "test -f /ok")]


def test_healthcheck_without_one_is_an_error():
    with pytest.raises(wait.ReadinessError, match="has no HEALTHCHECK"):
        wait.wait_until_ready(LoopbackTarget(), wait.healthcheck(), timeout=1)


def test_all_of_needs_each(listener):
    target = LoopbackTarget(ports={"1/tcp": listener.getsockname()[1]}, log_text="")
    strategy = wait.all_of(wait.tcp(1), wait.log("up"))
    with pytest.raises(wait.ReadinessTimeout, match="a TCP connection .* and the logs"):
        wait.wait_until_ready(target, strategy, timeout=0.05)
    target.log_text = "up\n"
    wait.wait_until_ready(target, strategy, timeout=1)
