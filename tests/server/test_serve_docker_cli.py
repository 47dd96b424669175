"""The docker CLI against `isobox serve`, both clients on this machine (Debian's 20.10 and
the newer one): run -d -p, run -it and exec -it on a terminal (sized), ps, logs -f, stats,
build (classic), pull, images, inspect, network, volume, cp, rm -f."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import termios
import time
import urllib.request
from pathlib import Path

import pytest

from tests.server.conftest import SERVE_IMAGE, serve

CLIENTS = [path for path in ("/usr/local/bin/docker", "/usr/bin/docker")
           if shutil.which(path)]
pytestmark = pytest.mark.skipif(not CLIENTS, reason="no docker CLI")


def _version(binary: str) -> str:
    return subprocess.run([binary, "--version"], capture_output=True, text=True,
                          check=False).stdout.split(",")[0].removeprefix("Docker version ")


@pytest.fixture(params=CLIENTS, ids=[_version(c) for c in CLIENTS])
def cli(request: pytest.FixtureRequest, served: str, tmp_path: Path):
    binary = request.param
    env = {**os.environ, "DOCKER_HOST": served, "DOCKER_CONFIG": str(tmp_path / "cfg"),
           "DOCKER_BUILDKIT": "0"}

    def run(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        done = subprocess.run([binary, *args], env=env, capture_output=True, text=True,
                              timeout=120, check=False, **kw)
        if check:
            assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
        return done
    run.binary, run.env = binary, env  # type: ignore[attr-defined]
    return run


def test_run_d_p_ps_logs_f_stats_rm(cli) -> None:
    web = ("mkdir /www; echo hello-port > /www/i; echo ready; exec httpd -f -p 8080 -h /www")
    cli("run", "-d", "-p", "127.0.0.1::8080", "--name", "web", SERVE_IMAGE, "sh", "-c", web)
    port = cli("port", "web", "8080").stdout.strip().splitlines()[0].rsplit(":", 1)[1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/i", timeout=30) as resp:
        assert resp.read() == b"hello-port\n"
    ps = cli("ps").stdout
    assert "web" in ps and f"127.0.0.1:{port}->8080/tcp" in ps
    stats = cli("stats", "--no-stream", "--format", "{{.Name}}", "web").stdout
    assert stats.strip() == "web"
    script = "echo one; mkfifo /go; read x < /go; echo two"
    cli("run", "-d", "--name", "talker", SERVE_IMAGE, "sh", "-c", script)
    follower = subprocess.Popen([cli.binary, "logs", "-f", "talker"], env=cli.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stdout.readline() == "one\n"
        cli("exec", "talker", "sh", "-c", "echo > /go")
        assert follower.stdout.readline() == "two\n"
        assert follower.wait(timeout=60) == 0  # the container ended: so does logs -f
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    cli("rm", "-f", "web", "talker")
    assert "web" not in cli("ps", "-a").stdout


def _on_terminal(cli, args: list[str], typed: bytes, rows: int = 33, columns: int = 101
                 ) -> tuple[int, bytes]:
    """The CLI on a terminal of rows x columns; `typed` once the shell prompts."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen([cli.binary, *args], env=cli.env, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    sent = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the client closed its terminal
                break
            if not data:
                break
            out += data
            if not sent and b"# " in out:
                os.write(master, typed)
                sent = True
        return proc.wait(timeout=60), out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_it_and_exec_it_on_a_sized_terminal(cli) -> None:
    typed = b"echo hi-$((1+1)); stty size; tty; exit 3\r"
    code, out = _on_terminal(cli, ["run", "-it", "--rm", SERVE_IMAGE, "sh"], typed)
    assert code == 3, out
    assert b"hi-2\r\n" in out and b"33 101\r\n" in out and b"/dev/pts/" in out
    cli("run", "-d", "--name", "shell-host", SERVE_IMAGE, "sleep", "300")
    code, out = _on_terminal(cli, ["exec", "-it", "shell-host", "sh"], typed, rows=40,
                             columns=120)
    assert code == 3, out
    assert b"hi-2\r\n" in out and b"40 120\r\n" in out
    cli("rm", "-f", "shell-host")


def test_build_images_inspect_cp_network_volume(cli, tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "greeting").write_text("hello-build\n")
    (context / "Dockerfile").write_text(f"FROM {SERVE_IMAGE}\nCOPY greeting /greeting\n"
                                        "RUN cat /greeting > /copied\nCMD [\"cat\", \"/copied\"]\n")
    built = cli("build", "-t", "cli-built:1", str(context))
    assert "Successfully tagged cli-built:1" in built.stdout
    assert "cli-built" in cli("images").stdout
    [image] = json.loads(cli("inspect", "cli-built:1").stdout)
    assert image["Config"]["Cmd"] == ["cat", "/copied"]
    assert cli("run", "--rm", "cli-built:1").stdout == "hello-build\n"
    cli("network", "create", "cli-net")
    assert "cli-net" in cli("network", "ls").stdout
    assert json.loads(cli("network", "inspect", "cli-net").stdout)[0]["Name"] == "cli-net"
    cli("volume", "create", "cli-vol")
    assert "cli-vol" in cli("volume", "ls").stdout
    assert json.loads(cli("volume", "inspect", "cli-vol").stdout)[0]["Name"] == "cli-vol"
    cli("run", "-d", "--name", "cp-box", "--network", "cli-net", "-v", "cli-vol:/data",
        SERVE_IMAGE, "sleep", "300")
    (tmp_path / "in.txt").write_text("copied-in\n")
    cli("cp", str(tmp_path / "in.txt"), "cp-box:/data/in.txt")
    assert cli("exec", "cp-box", "cat", "/data/in.txt").stdout == "copied-in\n"
    cli("exec", "cp-box", "sh", "-c", "echo copied-out > /out.txt")
    cli("cp", "cp-box:/out.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "copied-out\n"
    cli("rm", "-f", "cp-box")
    cli("network", "rm", "cli-net")
    cli("volume", "rm", "cli-vol")
    cli("rmi", "cli-built:1")
    assert "cli-net" not in cli("network", "ls").stdout
    assert "cli-vol" not in cli("volume", "ls").stdout


@pytest.fixture
def served_online(tmp_path: Path, isobox_home: Path, busybox_rootfs: Path,
                  monkeypatch: pytest.MonkeyPatch):
    """A server allowed to reach registries (this test's, on loopback only)."""
    monkeypatch.delenv("ISOBOX_OFFLINE", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    with serve(tmp_path, isobox_home, busybox_rootfs, name="online.sock") as host:
        yield host


@pytest.mark.parametrize("binary", CLIENTS, ids=[_version(c) for c in CLIENTS])
def test_pull_from_a_registry_on_loopback(binary: str, served_online: str,
                                          tmp_path: Path) -> None:
    from tests.registry.servers import Registry, have_registry

    if not have_registry():
        pytest.skip("docker-registry is not installed")
    registry = Registry(tmp_path / "registry").start()
    env = {**os.environ, "DOCKER_HOST": served_online, "DOCKER_CONFIG": str(tmp_path)}

    def docker(*args: str) -> str:
        done = subprocess.run([binary, *args], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
        return done.stdout

    try:
        ref = f"{registry.netloc}/served/pulled:1"
        docker("tag", SERVE_IMAGE, ref)
        docker("push", ref)
        docker("rmi", ref)
        assert ref not in docker("images", "--format", "{{.Repository}}:{{.Tag}}")
        assert "Downloaded newer image" in docker("pull", ref) or \
            ref in docker("images", "--format", "{{.Repository}}:{{.Tag}}")
        assert ref in docker("images", "--format", "{{.Repository}}:{{.Tag}}")
        assert docker("run", "--rm", ref, "echo", "pulled") == "pulled\n"
        docker("rmi", ref)
    finally:
        registry.stop()
