"""run_attached / exec_attached: stdin in, stdout and stderr out, exit status, terminals."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
import uuid

import pytest

from pytest_isobox.engine import ContainerNotFound
from tests.conftest import REPO, needs_docker
from tests.docker.conftest import Made

pytestmark = needs_docker

_RUN_ATTACHED = textwrap.dedent("""
    import sys
    from pytest_isobox.docker.engine import DockerEngine
    from pytest_isobox.engine import ContainerSpec
    image, name, tty = sys.argv[1], sys.argv[2], sys.argv[3] == "tty"
    script = sys.argv[4]
    spec = ContainerSpec(image=image, name=name, command=["sh", "-c", script], tty=tty,
                         stdin_open=True, auto_remove=True)
    sys.exit(DockerEngine().run_attached(spec))
""")

_EXEC_ATTACHED = textwrap.dedent("""
    import sys
    from pytest_isobox.docker.engine import DockerEngine
    container, script = sys.argv[1:]
    sys.exit(DockerEngine().exec_attached(container, ["sh", "-c", script], tty=False, stdin=True))
""")

# the daemon applies a resize to the container's terminal asynchronously: poll for it
_AFTER_A_LINE_AWAIT_SIZE = (
    'tty; read line; echo got:$line; i=0; '
    'while [ "$(stty size 2>/dev/null)" != "33 77" ] && [ $i -lt 500 ]; do '
    'i=$((i+1)); sleep 0.01; done; stty size; exit 4'
)

_TTY_RESTORED = textwrap.dedent("""
    import sys, termios
    from pytest_isobox.docker.engine import DockerEngine
    from pytest_isobox.engine import ContainerSpec
    image, name, report, script = sys.argv[1:]
    before = termios.tcgetattr(0)
    spec = ContainerSpec(image=image, name=name, tty=True, stdin_open=True, auto_remove=True,
                         command=["sh", "-c", script])
    code = DockerEngine().run_attached(spec)
    with open(report, "w") as out:
        out.write(f"{code} {termios.tcgetattr(0) == before}")
""")


def _python(script: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", script, *args], input=stdin, cwd=REPO,
                          capture_output=True, timeout=120, check=False)


def test_run_attached_pipes_stdin_and_separates_output(made: Made) -> None:
    name = f"isobox-test-attached-{uuid.uuid4().hex[:10]}"
    made.containers.append(name)
    done = _python(_RUN_ATTACHED, made.image, name, "notty", "cat; echo err >&2; exit 3",
                   stdin=b"hello from stdin\n")
    assert done.returncode == 3, done.stderr
    assert done.stdout == b"hello from stdin\n", done.stderr
    assert done.stderr == b"err\n"
    with pytest.raises(ContainerNotFound):  # auto_remove: gone once its exit code was read
        made.engine.state(name)


def test_exec_attached_pipes_stdin(made: Made) -> None:
    state = made.run(["sleep", "60"])
    done = _python(_EXEC_ATTACHED, state.id, "tr a-z A-Z; echo e >&2; exit 6", stdin=b"shout\n")
    assert (done.returncode, done.stdout, done.stderr) == (6, b"SHOUT\n", b"e\n")


def test_run_attached_with_a_terminal_restores_it(made: Made, tmp_path) -> None:
    name = f"isobox-test-tty-{uuid.uuid4().hex[:10]}"
    made.containers.append(name)
    report = tmp_path / "report"
    master, slave = pty.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _TTY_RESTORED, made.image, name, str(report),
             _AFTER_A_LINE_AWAIT_SIZE],
            stdin=slave, stdout=slave, stderr=slave, cwd=REPO, start_new_session=True)
        os.close(slave)
        seen = _read_until(master, b"/dev/pts/")  # the container has its own terminal
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
        os.kill(child.pid, signal.SIGWINCH)  # it has no controlling terminal to get it from
        os.write(master, b"typed\r")
        seen = _read_until(master, b"got:typed", seen)
        seen = _read_until(master, b"33 77", seen)  # the new size reached the container's tty
        assert child.wait(timeout=60) == 0, seen
    finally:
        os.close(master)
    assert report.read_text() == "4 True"


def _read_until(fd: int, marker: bytes, data: bytes = b"", deadline: float = 30.0) -> bytes:
    """`data` plus what the terminal at `fd` prints until `marker` has appeared in all of it."""
    end = time.monotonic() + deadline
    while marker not in data:
        left = end - time.monotonic()
        ready = left > 0 and select.select([fd], [], [], left)[0]
        assert ready, f"never saw {marker!r} in {data!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other side closed
            break
        data += chunk
    assert marker in data, data
    return data
