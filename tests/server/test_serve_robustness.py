"""The server under bad input, many clients and a kill -9: answers as dockerd's, nothing
blocked, nothing left behind."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.server.conftest import SERVE_IMAGE, _wait_listening

docker = pytest.importorskip("docker")


def _raw(host: str, request: bytes) -> tuple[int, dict]:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(host.removeprefix("unix://"))
    sock.sendall(request)
    data = b"".join(iter(lambda: sock.recv(65536), b""))
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body.strip() else {}


def _post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: "
            b"application/json\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def test_bad_bodies_and_absurd_values_leave_other_containers_alone(served: str) -> None:
    client = docker.DockerClient(base_url=served, timeout=60)
    bystander = client.containers.run(SERVE_IMAGE, ["sleep", "300"], detach=True)
    try:
        huge = (b"POST /containers/create HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{")
        status, body = _raw(served, huge)
        assert status == 413 and "larger than" in body["message"]
        cases = [
            (b'{"Image": "' + SERVE_IMAGE.encode() + b'", "HostConfig": {"Memory": -5}}',
             "Memory"),
            (b'{"Image": "' + SERVE_IMAGE.encode() + b'", "HostConfig": {"PortBindings": '
             b'{"80/tcp": [{"HostPort": "99999"}]}}}', "HostPort"),
            (b'{"Image": "' + SERVE_IMAGE.encode() + b'", "Cmd": 42}', "Cmd"),
            (b'[1, 2, 3]', "JSON object"),
            (b'{"Image": "' + SERVE_IMAGE.encode() + b'", "Unknown": {"deep": [1]}, '
             b'"Labels": {"a": ["not", "a", "string"]}}', "Labels"),
        ]
        for body_bytes, named in cases:
            status, answer = _raw(served, _post("/v1.43/containers/create", body_bytes))
            assert status == 400, (body_bytes, answer)
            assert named in answer["message"], answer
        status, answer = _raw(served, _post("/containers/create?name=bad/name",
                                            b'{"Image": "' + SERVE_IMAGE.encode() + b'"}'))
        assert status == 400 and "bad/name" in answer["message"]
        status, answer = _raw(served, _post("/containers/nope/kill?signal=SIGNOPE", b""))
        assert status == 404
        status, answer = _raw(served, _post(f"/containers/{bystander.id}/kill?signal=NOPE",
                                            b""))
        assert status == 400 and "NOPE" in answer["message"]
        # a body cut short by a client that went away
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(served.removeprefix("unix://"))
        sock.sendall(b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n"
                     b"\r\n{\"Image\":")
        sock.close()
        bystander.reload()
        assert bystander.status == "running"
        assert [c.id for c in client.containers.list(all=True)] == [bystander.id]
    finally:
        bystander.remove(force=True)
        client.close()


def test_streams_and_hijacks_do_not_block_other_clients(served: str) -> None:
    client = docker.DockerClient(base_url=served, timeout=60)
    held = []
    try:
        sleeper = client.containers.run(SERVE_IMAGE, ["sleep", "300"], detach=True)
        held.append(client.events(decode=True))                       # a streamed body
        held.append(sleeper.logs(stream=True, follow=True))           # a follow
        held.append(sleeper.attach(stream=True))                      # a hijacked attach
        waiter = threading.Thread(target=sleeper.wait, daemon=True)   # a /wait
        waiter.start()
        exec_id = client.api.exec_create(sleeper.id, ["sh", "-c", "read x"], stdin=True)["Id"]
        held.append(client.api.exec_start(exec_id, socket=True))      # a hijacked exec
        others = [docker.DockerClient(base_url=served, timeout=60) for _ in range(4)]
        outputs: list[bytes] = []
        threads = [threading.Thread(target=lambda c=c: outputs.append(
            c.containers.run(SERVE_IMAGE, ["echo", "free"], remove=True))) for c in others]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert outputs == [b"free\n"] * 4
        for c in others:
            c.close()
        sleeper.kill()
        waiter.join(timeout=60)
        assert not waiter.is_alive()
    finally:
        for stream in held:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        for c in client.containers.list(all=True):
            c.remove(force=True)
        client.close()


def test_the_unix_socket_is_0660(served: str) -> None:
    mode = os.stat(served.removeprefix("unix://")).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660


def _start(sock: Path, home: Path, log_path: Path) -> subprocess.Popen:
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pytest_isobox.server", "-H",
                                 f"unix://{sock}", "--home", str(home)],
                                stdout=log, stderr=subprocess.STDOUT)
    _wait_listening(proc, log_path)
    return proc


def test_kill_9_of_the_server_leaves_nothing(tmp_path: Path, isobox_home: Path,
                                             busybox_rootfs: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (the native engine, rootful)")
    subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "import", str(busybox_rootfs),
                    SERVE_IMAGE], check=True, capture_output=True)
    sock, log_path = tmp_path / "killed.sock", tmp_path / "killed.log"
    proc = _start(sock, isobox_home, log_path)
    client = docker.DockerClient(base_url=f"unix://{sock}", timeout=60)
    c = client.containers.run(SERVE_IMAGE, ["sleep", "300"], detach=True,
                              ports={"8080/tcp": None})
    c.reload()
    pid = c.attrs["State"]["Pid"]
    pidfd = os.pidfd_open(pid)
    client.close()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    try:  # its container dies with it (its monitor watches the server)
        assert select.select([pidfd], [], [], 60)[0], f"container pid {pid} outlived kill -9"
    finally:
        os.close(pidfd)
    # the next server on the same socket path starts (the stale socket goes) and sweeps
    proc = _start(sock, isobox_home, tmp_path / "restarted.log")
    try:
        client = docker.DockerClient(base_url=f"unix://{sock}", timeout=60)
        assert client.containers.list(all=True) == []
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    containers = isobox_home / "containers"
    assert not [p for p in containers.iterdir() if not p.name.startswith(".")]
    assert not sock.exists()
