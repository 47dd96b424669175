"""Real clients against `isobox serve`: docker-py and the docker CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.conftest import SERVE_IMAGE

docker = pytest.importorskip("docker")


def test_docker_py_run_logs_exec_remove(client) -> None:
    out = client.containers.run(SERVE_IMAGE, ["sh", "-c", "echo out; echo err >&2"],
                                remove=True, stderr=True)
    assert out == b"out\nerr\n"
    c = client.containers.run(SERVE_IMAGE, ["sleep", "60"], detach=True,
                              labels={"suite": "serve"})
    assert c.status in ("created", "running")
    c.reload()
    assert c.status == "running" and c.attrs["HostConfig"]["LogConfig"]["Type"] == "json-file"
    code, output = c.exec_run(["sh", "-c", "echo exec-$((1+2)); exit 4"])
    assert (code, output) == (4, b"exec-3\n")
    assert [x.id for x in client.containers.list(filters={"label": "suite=serve"})] == [c.id]
    assert client.containers.list(filters={"label": "suite=other"}) == []
    c.kill()
    assert c.wait()["StatusCode"] == 137
    c.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_docker_py_images_build_networks_volumes(client) -> None:
    assert any(SERVE_IMAGE in i.tags for i in client.images.list())
    image = client.images.get(SERVE_IMAGE)
    image.tag("busybox", "retagged")
    assert "busybox:retagged" in client.images.get("busybox:retagged").tags
    client.images.remove("busybox:retagged")
    import io

    dockerfile = f"FROM {SERVE_IMAGE}\nARG WHO=nobody\nRUN echo hello-$WHO > /greeting\n"
    built, logs = client.images.build(fileobj=io.BytesIO(dockerfile.encode()),
                                      tag="served-build:1", buildargs={"WHO": "serve"})
    assert any("Successfully built" in (line.get("stream") or "") for line in logs)
    out = client.containers.run("served-build:1", ["cat", "/greeting"], remove=True)
    assert out == b"hello-serve\n"
    client.images.remove(built.id, force=True)
    net = client.networks.create("served-net", labels={"k": "v"})
    assert client.networks.get(net.id).name == "served-net"
    net.remove()
    vol = client.volumes.create("served-vol")
    assert "served-vol" in [v.name for v in client.volumes.list()]
    vol.remove()


needs_cli = pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")


def _cli(host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": "/nonexistent-isobox"}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=check)


@needs_cli
def test_docker_cli_run_ps_exec_logs(served: str) -> None:
    assert _cli(served, "run", "--rm", SERVE_IMAGE, "echo", "hi").stdout == "hi\n"
    assert _cli(served, "run", "--rm", SERVE_IMAGE, "sh", "-c", "exit 3",
                check=False).returncode == 3
    cid = _cli(served, "run", "-d", "--name", "cli1", SERVE_IMAGE, "sh", "-c",
               "echo started; sleep 60").stdout.strip()
    try:
        assert "cli1" in _cli(served, "ps").stdout
        assert _cli(served, "exec", "cli1", "echo", "in-exec").stdout == "in-exec\n"
        logs = _cli(served, "logs", "cli1")
        assert logs.stdout == "started\n"
        inspect = json.loads(_cli(served, "inspect", cid).stdout)
        assert inspect[0]["State"]["Running"] is True
    finally:
        _cli(served, "rm", "-f", "cli1")
    assert "cli1" not in _cli(served, "ps", "-a").stdout


def _raw(host: str, request: bytes) -> tuple[int, bytes]:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(host.removeprefix("unix://"))
    sock.sendall(request)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_bad_input_answered_as_docker(served: str) -> None:
    status, body = _raw(served, b"POST /v1.43/containers/create HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Type: application/json\r\nContent-Length: 9\r\n"
                                b"Connection: close\r\n\r\n{\"Image\":")
    assert status == 400 and "invalid JSON" in json.loads(body)["message"]
    status, body = _raw(served, b"GET /containers/nope/json HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n\r\n")
    assert status == 404 and json.loads(body) == {"message": "No such container: nope"}
    status, body = _raw(served, b"GET /v1.12/version HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n\r\n")
    assert status == 400 and "too old" in json.loads(body)["message"]
    status, body = _raw(served, b"HEAD /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200


def test_tcp_off_loopback_refused(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest_isobox.server", "-H",
                           "tcp://0.0.0.0:2375", "--home", str(tmp_path)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "refusing -H tcp://0.0.0.0:2375" in proc.stderr and "--tlsverify" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_server_exit_removes_its_containers(served: str, isobox_home: Path) -> None:
    client = docker.DockerClient(base_url=served, timeout=60)
    c = client.containers.run(SERVE_IMAGE, ["sleep", "60"], detach=True)
    client.close()
    assert (isobox_home / "containers" / c.id).exists()
    # the `served` finalizer stops the server and checks its home has no container left
