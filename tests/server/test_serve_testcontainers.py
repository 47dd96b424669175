"""testcontainers-python and Debian's docker-compose 1.29 against `isobox serve`, unchanged:
only DOCKER_HOST (and Ryuk off: the server cleans a dead client's session itself)."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.server.conftest import SERVE_IMAGE, serve

docker = pytest.importorskip("docker")

_WEB = ("mkdir /www; echo hello-tc > /www/index.html; echo ready; "
        "exec httpd -f -p 8080 -h /www")

_GENERIC = f"""
import urllib.request
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

container = (DockerContainer({SERVE_IMAGE!r}).with_exposed_ports(8080)
             .with_command(["sh", "-c", {_WEB!r}])
             .waiting_for(LogMessageWaitStrategy("ready")))
with container:
    url = f"http://{{container.get_container_host_ip()}}:{{container.get_exposed_port(8080)}}/"
    print(urllib.request.urlopen(url + "index.html", timeout=30).read().decode(), end="")
"""

# started, then the process dies without stopping it: the server must remove it
_ABANDONED = f"""
import os
from testcontainers.core.container import DockerContainer
from testcontainers.core.labels import SESSION_ID

container = DockerContainer({SERVE_IMAGE!r}).with_command(["sleep", "300"]).start()
print(SESSION_ID, container.get_wrapped_container().id, flush=True)
os._exit(0)
"""


@pytest.fixture
def served_any_ip(tmp_path: Path, isobox_home: Path, busybox_rootfs: Path):
    """A server publishing unbound ports on every address, as dockerd does (`--ip 0.0.0.0`):
    testcontainers run inside a container (here, CI) connects to the bridge's gateway."""
    pytest.importorskip("testcontainers")
    with serve(tmp_path, isobox_home, busybox_rootfs, "--ip", "0.0.0.0") as host:
        yield host


def _python(host: str, script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "client.py"
    path.write_text(script)
    env = {**os.environ, "DOCKER_HOST": host, "TESTCONTAINERS_RYUK_DISABLED": "true"}
    return subprocess.run([sys.executable, str(path)], env=env, capture_output=True,
                          text=True, timeout=180, cwd=tmp_path, check=False)


def test_testcontainers_generic_container_port_and_log_wait(served_any_ip: str,
                                                            tmp_path: Path) -> None:
    done = _python(served_any_ip, _GENERIC, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello-tc\n"
    client = docker.DockerClient(base_url=served_any_ip)
    assert client.containers.list(all=True) == []  # stopped and removed by testcontainers
    client.close()


def test_a_dead_clients_session_is_removed_without_ryuk(served_any_ip: str,
                                                         tmp_path: Path) -> None:
    done = _python(served_any_ip, _ABANDONED, tmp_path)
    assert done.returncode == 0, done.stderr
    session, cid = done.stdout.split()
    client = docker.DockerClient(base_url=served_any_ip)
    try:
        other = client.containers.run(SERVE_IMAGE, ["sleep", "300"], detach=True,
                                      labels={"org.testcontainers.session-id": "someone-else"})
        deadline = time.monotonic() + 60
        while any(c.id == cid for c in client.containers.list(all=True)):
            assert time.monotonic() < deadline, f"session {session}'s container stayed"
            select.select([], [], [], 0.1)  # the server's reaper runs on its own thread
        assert [c.id for c in client.containers.list()] == [other.id]  # a live client's
        other.remove(force=True)
    finally:
        client.close()


_POSTGRES = """
import subprocess, sys
from testcontainers.postgres import PostgresContainer

with PostgresContainer(sys.argv[1], username="tcuser", password="tc-secret",
                       dbname="tcdb") as pg:
    host, port = pg.get_container_host_ip(), pg.get_exposed_port(5432)
    url = pg.get_connection_url(driver=None)
    assert url == f"postgresql://tcuser:tc-secret@{host}:{port}/tcdb", url
    done = subprocess.run(["psql", url, "-Atc", "create table t (n int); "
                           "insert into t values (40), (2); select sum(n) from t"],
                          capture_output=True, text=True, timeout=60, check=True)
    print(done.stdout.strip().splitlines()[-1])
"""


def test_testcontainers_postgres_module(served_any_ip: str, tmp_path: Path) -> None:
    """Its own flow (env, wait by psql inside, connection URL) on an image of this host's
    Postgres, built through the server; the query from the host's psql over the port."""
    from tests.server.host_images import have_postgres, postgres_context

    if not have_postgres() or not shutil.which("psql"):
        pytest.skip("no Postgres 15 on this host to make the image from")
    client = docker.DockerClient(base_url=served_any_ip, timeout=300)
    try:
        context = postgres_context(tmp_path / "pg-context", SERVE_IMAGE)
        client.images.build(path=str(context), tag="postgres:isobox-test", rm=True)
        done = _python(served_any_ip, _POSTGRES.replace("sys.argv[1]", "'postgres:isobox-test'"),
                       tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "42"
        assert client.containers.list(all=True) == []
    finally:
        client.close()


_REDIS = """
import sys
try:
    from testcontainers.community.redis import RedisContainer
except ImportError:
    from testcontainers.redis import RedisContainer

with RedisContainer(sys.argv[1], password="tc-secret") as guarded:  # its own command
    client = guarded.get_client()
    client.set("greeting", "from-redis")
    print(client.get("greeting").decode())
with RedisContainer(sys.argv[1]) as plain:  # the image's command
    print(plain.get_client().incr("count", 41) + 1)
"""


def test_testcontainers_redis_module(served_any_ip: str, tmp_path: Path) -> None:
    """Its own flow (exposed port, its ping wait, a password through its command) on an image
    of this host's Redis, built through the server; the module's client talks to it."""
    from tests.server.host_images import have_redis, redis_context

    if not have_redis():
        pytest.skip("no redis-server (Debian's redis-tools) on this host to make the image from")
    pytest.importorskip("redis")
    client = docker.DockerClient(base_url=served_any_ip, timeout=300)
    try:
        context = redis_context(tmp_path / "redis-context", SERVE_IMAGE)
        client.images.build(path=str(context), tag="redis:isobox-test", rm=True)
        done = _python(served_any_ip, _REDIS.replace("sys.argv[1]", "'redis:isobox-test'"),
                       tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["from-redis", "42"]
        assert client.containers.list(all=True) == []
    finally:
        client.close()


_COMPOSE = f"""
version: "3"
services:
  web:
    image: {SERVE_IMAGE}
    command: ["sh", "-c", "mkdir /www; echo hi-from-web > /www/i; echo web-up; \\
exec httpd -f -p 8080 -h /www"]
    ports: ["8080"]
  client:
    image: {SERVE_IMAGE}
    command: ["sh", "-c", "echo client-up; exec sleep 300"]
    depends_on: [web]
"""


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="no docker-compose 1.x")
def test_docker_compose_1_up_ps_logs_exec_down(served: str, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "docker-compose.yml").write_text(_COMPOSE)
    env = {**os.environ, "DOCKER_HOST": served}

    def compose(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker-compose", "--ansi", "never", *args], cwd=project,
                              env=env, capture_output=True, text=True, timeout=180,
                              check=False)
        assert done.returncode == 0, f"docker-compose {args}: {done.stderr}"
        return done

    try:
        compose("up", "-d")
        ps = compose("ps").stdout
        assert "proj_web_1" in ps and "proj_client_1" in ps and ps.count(" Up ") == 2
        assert "->8080/tcp" in ps
        logs = compose("logs").stdout
        assert "web-up" in logs and "client-up" in logs
        assert compose("exec", "-T", "client", "wget", "-qO-", "http://web:8080/i"
                       ).stdout == "hi-from-web\n"
    finally:
        compose("down")
    client = docker.DockerClient(base_url=served)
    assert client.containers.list(all=True) == []
    assert "proj_default" not in [n.name for n in client.networks.list()]
    client.close()
