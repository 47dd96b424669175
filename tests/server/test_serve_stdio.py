"""stdin through hijacked attach and exec, and exec output as it comes: the docker CLI's
`run -i` and `exec -i` with piped stdin, docker-py's raw exec socket."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess

import pytest

from tests.server.conftest import SERVE_IMAGE

docker = pytest.importorskip("docker")
needs_cli = pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")


def _cli(host: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": "/nonexistent-isobox"}
    return subprocess.run(["docker", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


@needs_cli
def test_docker_run_i_and_exec_i_read_piped_stdin(served: str) -> None:
    done = _cli(served, "run", "-i", "--rm", SERVE_IMAGE, "cat", stdin="through-stdin\n")
    assert (done.returncode, done.stdout) == (0, "through-stdin\n"), done.stderr
    done = _cli(served, "run", "-i", "--rm", SERVE_IMAGE, "sh", "-c",
                "wc -l; echo to-err >&2; exit 3", stdin="a\nb\nc\n")
    assert (done.returncode, done.stdout.strip(), done.stderr) == (3, "3", "to-err\n")
    _cli(served, "run", "-d", "--name", "stdin-exec", SERVE_IMAGE, "sleep", "300")
    try:
        done = _cli(served, "exec", "-i", "stdin-exec", "sh", "-c", "tr a-z A-Z; exit 4",
                    stdin="shout\n")
        assert (done.returncode, done.stdout) == (4, "SHOUT\n"), done.stderr
        done = _cli(served, "exec", "stdin-exec", "no-such-command")
        assert done.returncode == 127 and "no-such-command" in done.stderr
    finally:
        _cli(served, "rm", "-f", "stdin-exec")


def _frames(sock: socket.socket):
    """Docker's multiplexed frames read from a raw exec socket: (stream, bytes)."""
    buf = b""
    while True:
        while len(buf) >= 8 and len(buf) >= 8 + struct.unpack(">xxxxI", buf[:8])[0]:
            stream, size = struct.unpack(">BxxxI", buf[:8])
            yield stream, buf[8:8 + size]
            buf = buf[8 + size:]
        chunk = sock.recv(65536)
        if not chunk:
            return
        buf += chunk


def test_exec_output_comes_as_it_is_written_and_stdin_reaches_it(served: str) -> None:
    client = docker.DockerClient(base_url=served, timeout=60)
    api = client.api
    c = client.containers.run(SERVE_IMAGE, ["sleep", "300"], detach=True)
    try:
        # the command says "first", then waits for a line on its stdin: the test sends it
        # only after it has read "first", so output held back to the end would hang here
        script = "echo first; read x; echo got-$x; echo bye >&2"
        exec_id = api.exec_create(c.id, ["sh", "-c", script], stdin=True)["Id"]
        raw = api.exec_start(exec_id, socket=True)
        sock = raw._sock
        sock.settimeout(60)
        frames = _frames(sock)
        assert next(frames) == (1, b"first\n")
        sock.sendall(b"line\n")
        sock.shutdown(socket.SHUT_WR)
        rest = list(frames)
        assert (1, b"got-line\n") in rest and (2, b"bye\n") in rest
        sock.close()
        assert api.exec_inspect(exec_id)["ExitCode"] == 0
        # a tty exec: one raw stream, \r\n as a terminal writes it
        exec_id = api.exec_create(c.id, ["sh", "-c", "echo in-tty; [ -t 1 ] && echo is-tty"],
                                  tty=True)["Id"]
        assert api.exec_start(exec_id, tty=True) == b"in-tty\r\nis-tty\r\n"
    finally:
        c.remove(force=True)
        client.close()
