"""The `isobox` command end to end: Docker's verbs on the native engine, in real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import docker_available, needs_root

pytestmark = needs_root


def isobox(*args: str, check: bool = True, input: bytes | None = None, timeout: float = 60
           ) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pytest_isobox.cli", *args], check=False,
                          capture_output=True,
                          input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"isobox {' '.join(args)} -> {proc.returncode}\n"
                             f"{proc.stdout.decode()}\n{proc.stderr.decode()}")
    return proc


@pytest.fixture
def base(busybox_rootfs: Path, isobox_home: Path) -> str:
    out = isobox("import", str(busybox_rootfs), "busybox:test").stdout.decode().strip()
    assert out.startswith("sha256:")
    return "busybox:test"


def test_run_prints_output_and_returns_exit_status(base: str) -> None:
    proc = isobox("run", "--rm", base, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert proc.returncode == 3
    assert proc.stdout == b"out\n"
    assert proc.stderr == b"err\n"
    assert isobox("ps", "-a", "-q").stdout.strip() == b""  # --rm removed it


def test_a_foreground_run_without_rm_is_kept_once_it_has_exited(base: str) -> None:
    """As `docker run` leaves it for `ps -a`: the next commands (which sweep what dead
    owners left) keep it too, though the run that made it is gone."""
    proc = isobox("run", "--name", "kept", base, "sh", "-c", "exit 4", check=False)
    assert proc.returncode == 4
    isobox("run", "--rm", base, "true")  # a creating verb: its engine sweeps at open
    listed = isobox("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.decode()
    assert listed.startswith("kept Exited (4)"), listed
    isobox("start", "kept")  # started again by another process: its own, not the dead run's
    assert isobox("wait", "kept").stdout.strip() == b"4"
    isobox("rm", "kept")


def test_run_flags_reach_the_container(base: str) -> None:
    proc = isobox("run", "--rm", "-e", "GREETING=hi", "-w", "/tmp", "-u", "nobody",
                  "-h", "box", base, "sh", "-c", 'echo "$GREETING $(pwd) $(id -u) $(hostname)"')
    assert proc.stdout.decode().split() == ["hi", "/tmp", "65534", "box"]


def test_entrypoint_override(base: str) -> None:
    proc = isobox("run", "--rm", "--entrypoint", "echo", base, "a", "b")
    assert proc.stdout == b"a b\n"


def test_detached_lifecycle_across_processes(base: str) -> None:
    cid = isobox("run", "-d", "--name", "sleeper", base, "sh", "-c",
                 "echo started; exec sleep 1000").stdout.decode().strip()
    try:
        listing = isobox("ps").stdout.decode()
        assert "sleeper" in listing and cid[:12] in listing
        assert isobox("exec", "sleeper", "cat", "/etc/hostname").stdout.strip() == cid[:12].encode()
        assert isobox("exec", "sleeper", "sh", "-c", "exit 7", check=False).returncode == 7
        logs = isobox("logs", "sleeper").stdout
        assert logs == b"started\n"
        doc = json.loads(isobox("inspect", "sleeper").stdout)[0]
        assert doc["State"]["Running"] is True
        isobox("stop", "-t", "1", "sleeper")
        doc = json.loads(isobox("inspect", "sleeper").stdout)[0]
        assert doc["State"]["Running"] is False
        assert doc["State"]["ExitCode"] == 137  # sleep ignores nothing: SIGTERM as pid 1 is ignored
        assert "OOMKilled" in doc["State"]
        assert "Exited (137)" in isobox("ps", "-a").stdout.decode()
    finally:
        isobox("rm", "-f", cid, check=False)
    assert cid[:12].encode() not in isobox("ps", "-a").stdout


def test_memory_limit_and_oom_in_inspect(base: str) -> None:
    proc = isobox("run", "--name", "hog", "-m", "32m", base, "sh", "-c",
                  "head -c 200m /dev/zero | tail > /dev/null", check=False)
    try:
        assert proc.returncode == 137
        state = json.loads(isobox("inspect", "hog").stdout)[0]["State"]
        assert state["OOMKilled"] is True and state["ExitCode"] == 137
    finally:
        isobox("rm", "-f", "hog", check=False)


def test_cp_in_and_out(base: str, tmp_path: Path) -> None:
    cid = isobox("run", "-d", base, "sleep", "1000").stdout.decode().strip()
    try:
        src = tmp_path / "hello.txt"
        src.write_text("hello\n")
        isobox("cp", str(src), f"{cid}:/tmp/")
        assert isobox("exec", cid, "cat", "/tmp/hello.txt").stdout == b"hello\n"
        isobox("exec", cid, "sh", "-c", "mkdir -p /out/sub && echo deep > /out/sub/f")
        isobox("cp", f"{cid}:/out", str(tmp_path / "copied"))
        assert (tmp_path / "copied" / "sub" / "f").read_text() == "deep\n"
    finally:
        isobox("rm", "-f", cid)


def test_unknown_image_is_one_clear_line(isobox_home: Path) -> None:
    proc = isobox("run", "--rm", "nosuchimage:1", "true", check=False)
    assert proc.returncode == 125
    err = proc.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "nosuchimage" in err


def test_images_tag_rmi(base: str) -> None:
    isobox("tag", base, "other:v1")
    listing = isobox("images").stdout.decode()
    assert "busybox" in listing and "other" in listing and "v1" in listing
    isobox("rmi", "other:v1")
    assert "other" not in isobox("images").stdout.decode()


def test_build_then_run(base: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        f'FROM {base}\nMAINTAINER qingbing "qingbing@qq.com"\n'
        'RUN mkdir /data && echo "hello world" > /data/hello.txt\nEXPOSE 80\n')
    first = isobox("build", "-t", "seed:1", str(tmp_path)).stdout.decode()
    assert "Successfully tagged seed:1" in first
    second = isobox("build", "-t", "seed:1", str(tmp_path)).stdout.decode()
    assert second.count("Using cache") == 3
    image_id = isobox("build", "-q", str(tmp_path)).stdout.decode().strip()
    assert image_id.startswith("sha256:")
    cfg = json.loads(isobox("image", "inspect", "seed:1").stdout)[0]
    assert "80/tcp" in cfg["Config"]["ExposedPorts"]  # Docker's document
    assert isobox("run", "--rm", "seed:1", "cat", "/data/hello.txt").stdout == b"hello world\n"


def test_network_port_and_inspect(base: str) -> None:
    isobox("network", "create", "clinet")
    try:
        assert "clinet" in isobox("network", "ls").stdout.decode()
        cid = isobox("run", "-d", "--network", "clinet", "--network-alias", "svc", "-p",
                     "127.0.0.1::80", base, "httpd", "-f", "-p", "80").stdout.decode().strip()
        try:
            port_line = isobox("port", cid).stdout.decode().strip()
            assert port_line.startswith("80/tcp -> 127.0.0.1:")
            host_port = int(port_line.rsplit(":", 1)[1])
            assert isobox("port", cid, "80").stdout.decode().strip() == f"127.0.0.1:{host_port}"
            doc = json.loads(isobox("inspect", cid).stdout)[0]
            assert "clinet" in doc["NetworkSettings"]["Networks"]
            assert doc["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"] == str(host_port)
            peer = isobox("run", "--rm", "--network", "clinet", base, "wget", "-qO-",
                          "http://svc/etc/hostname", check=False)
            assert peer.stdout.strip() == cid[:12].encode()
        finally:
            isobox("rm", "-f", cid)
        isobox("network", "rm", "clinet")
        assert "clinet" not in isobox("network", "ls").stdout.decode()
    finally:
        isobox("network", "rm", "clinet", check=False)


def test_volume_df_and_prune(base: str) -> None:
    isobox("volume", "create", "keep")
    isobox("run", "--rm", "-v", "keep:/data", base, "sh", "-c", "echo kept > /data/f")
    assert isobox("run", "--rm", "-v", "keep:/data", base, "cat", "/data/f").stdout == b"kept\n"
    assert "keep" in isobox("volume", "ls").stdout.decode()
    isobox("volume", "rm", "keep")
    df = isobox("df").stdout.decode()
    assert "Images" in df or "images" in df
    isobox("tag", base, "cli-df/second:v1")  # one image, two tags: a row each, one id
    rows = [line.split() for line in isobox("df", "-v").stdout.decode().splitlines()]
    header = rows.index(["REPOSITORY", "TAG", "IMAGE", "ID", "SIZE", "SHARED", "SIZE", "UNIQUE",
                         "SIZE"])
    ids = {tuple(r[:2]): r[2] for r in rows[header + 1:]}
    assert ids[("cli-df/second", "v1")] == ids[tuple(base.rsplit(":", 1))]
    isobox("rmi", "cli-df/second:v1")
    isobox("rmi", base)
    assert "Total reclaimed space" in isobox("prune").stdout.decode()
    assert isobox("images", "-q").stdout.strip() == b""


@pytest.mark.skipif(not docker_available(), reason="no Docker daemon answers")
def test_save_runs_under_docker_and_docker_save_loads(base: str, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    isobox("save", "-o", str(archive), base)
    tag = "isobox-cli-test/busybox:saved"
    isobox("tag", base, tag)
    isobox("save", "-o", str(archive), tag)
    subprocess.run(["docker", "load", "-i", str(archive)], check=True, capture_output=True)
    try:
        ours = isobox("run", "--rm", tag, "cat", "/etc/passwd").stdout
        theirs = subprocess.run(["docker", "run", "--rm", tag, "cat", "/etc/passwd"],
                                check=True, capture_output=True).stdout
        assert ours == theirs
        back = tmp_path / "from-docker.tar"
        subprocess.run(["docker", "save", "-o", str(back), tag], check=True)
        isobox("rmi", tag)
        assert "Loaded image" in isobox("load", "-i", str(back)).stdout.decode()
        assert isobox("run", "--rm", tag, "cat", "/etc/passwd").stdout == theirs
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], check=False, capture_output=True)


def _converse(args: list[str], script: list[tuple[bytes, bytes]], timeout: float = 30
              ) -> tuple[int, bytes]:
    """Run `isobox ARGS` on a real pty; for each (send, expect) pair, type `send` and read until
    `expect` appears. Returns the exit status and everything the terminal showed."""
    import os
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "pytest_isobox.cli", *args])
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        for send, expect in script:
            if send:
                os.write(fd, send)
            while expect not in seen:
                assert time.monotonic() < deadline, f"waited for {expect!r}; terminal: {seen!r}"
                if select.select([fd], [], [], 0.5)[0]:
                    try:
                        seen += os.read(fd, 4096)
                    except OSError:  # the pty closed: the command ended
                        break
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), seen


def test_run_it_gives_an_interactive_terminal(base: str) -> None:
    code, seen = _converse(["run", "-it", "--rm", base, "sh"], [
        (b"", b"# "),
        (b"tty; echo sum-$((20+22))\r", b"sum-42"),
        (b"exit 3\r", b"exit 3"),
    ])
    assert code == 3
    assert b"/dev/pts/" in seen


def test_exec_it_into_a_running_container(base: str) -> None:
    cid = isobox("run", "-d", base, "sleep", "1000").stdout.decode().strip()
    try:
        code, _ = _converse(["exec", "-it", cid, "sh"], [
            (b"", b"# "),
            (b"echo in-$(hostname)\r", f"in-{cid[:12]}".encode()),
            (b"exit\r", b"exit"),
        ])
        assert code == 0
    finally:
        isobox("rm", "-f", cid)


def test_logs_follow_ends_with_the_container(base: str) -> None:
    cid = isobox("run", "-d", base, "sh", "-c",
                 "echo one; read x < /dev/null; sleep 0.5; echo two >&2; echo three"
                 ).stdout.decode().strip()
    try:
        proc = isobox("logs", "-f", cid)
        assert proc.stdout == b"one\nthree\n"
        assert proc.stderr == b"two\n"
        last = isobox("logs", "--tail", "1", cid)
        assert last.stdout + last.stderr in (b"three\n", b"two\n")  # streams race each other
    finally:
        isobox("rm", "-f", cid)


def test_ulimits_within_the_host_hard_limits(base: str) -> None:
    import resource

    proc = isobox("run", "--rm", "--ulimit", "nofile=512:1024", "--ulimit", "core=0", base,
                  "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c")
    assert proc.stdout.split() == [b"512", b"1024", b"0"]
    host_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    too_high = isobox("run", "--rm", "--ulimit", f"nofile={host_hard + 1}", base, "true",
                      check=False)
    assert too_high.returncode == 125
    assert f"exceeds the host's hard limit {host_hard}" in too_high.stderr.decode()
    bad = isobox("run", "--rm", "--ulimit", "nofile=9:1", base, "true", check=False)
    assert bad.returncode == 125 and b"soft limit above hard limit" in bad.stderr
    assert isobox("ps", "-a", "-q").stdout.strip() == b""  # nothing made by the refusals


def test_read_only_root(base: str) -> None:
    proc = isobox("run", "--rm", "--read-only", base, "sh", "-c", "touch /x", check=False)
    assert proc.returncode == 1 and b"Read-only file system" in proc.stderr
    assert isobox("run", "--rm", base, "sh", "-c", "touch /x").returncode == 0
