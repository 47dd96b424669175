"""`run -it` and `exec -i/-t`: the caller's terminal relayed to a container's pty or pipes."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec
from tests.conftest import REPO, needs_root

pytestmark = needs_root

RUN_ATTACHED = """
import sys
from pytest_isobox.engine import ContainerSpec
from pytest_isobox.native.engine import NativeEngine
with NativeEngine(home=sys.argv[1]) as engine:
    code = engine.run_attached(ContainerSpec(image=sys.argv[2], command=["sh"], tty=True,
                                             stdin_open=True, network_mode="none",
                                             auto_remove=True))
sys.exit(code)
"""

RUN_ATTACHED_PIPES = """
import sys
from pytest_isobox.engine import ContainerSpec
from pytest_isobox.native.engine import NativeEngine
with NativeEngine(home=sys.argv[1]) as engine:
    sys.exit(engine.run_attached(ContainerSpec(image=sys.argv[2], command=sys.argv[3:],
                                               network_mode="none", auto_remove=True)))
"""

EXEC_ATTACHED = """
import sys
from pytest_isobox.native.engine import NativeEngine
engine = NativeEngine(home=sys.argv[1])
sys.exit(engine.exec_attached(sys.argv[2], sys.argv[4:], tty=sys.argv[3] == "tty", stdin=True))
"""


def run_on_pty(args: list[str], keys: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Run a process with a pty as its terminal, type `keys` at the shell's first prompt,
    return (status, all output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=REPO,
                            start_new_session=True)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if keys and b"# " in output:
                os.write(master, keys)
                keys = b""
            if not select.select([master], [], [], deadline - time.monotonic())[0]:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the process and everything on the pty are gone
                break
            if not chunk:
                break
            output += chunk
        return proc.wait(timeout=timeout), output
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_run_attached_gives_the_container_a_terminal(isobox_home: Path, busybox_rootfs: Path):
    status, output = run_on_pty(
        [sys.executable, "-c", RUN_ATTACHED, str(isobox_home), str(busybox_rootfs)],
        b"tty; echo term=$TERM; exit 3\n")
    assert status == 3, output
    assert b"/dev/pts/0" in output and b"term=xterm" in output
    assert not list((isobox_home / "containers").glob("[0-9a-f]*"))  # auto-removed


@pytest.fixture
def running(isobox_home: Path, busybox_rootfs: Path):
    from pytest_isobox.native.engine import NativeEngine

    engine = NativeEngine(home=isobox_home)
    state = engine.run(ContainerSpec(image=str(busybox_rootfs), command=["sleep", "600"],
                                     network_mode="none"))
    yield state.id
    engine.close()


def test_exec_attached_pipes_stdin_and_output(isobox_home: Path, running: str):
    proc = subprocess.run(
        [sys.executable, "-c", EXEC_ATTACHED, str(isobox_home), running, "pipes",
         "sh", "-c", "tr a-z A-Z; echo err >&2; exit 5"],
        input=b"hello\n", capture_output=True, cwd=REPO, timeout=60, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (5, b"HELLO\n", b"err\n")


def test_exec_attached_with_a_tty(isobox_home: Path, running: str):
    status, output = run_on_pty(
        [sys.executable, "-c", EXEC_ATTACHED, str(isobox_home), running, "tty", "sh"],
        b"tty; exit 6\n")
    assert status == 6, output
    assert b"/dev/pts/" in output


def test_run_attached_keeps_each_stream_in_order(isobox_home: Path, busybox_rootfs: Path):
    """The monitor relays stdout and stderr from two pipes: each arrives whole and in order.
    Between the two streams there is no order to keep (none is given by Docker either): the
    monitor passes on whichever pipe it finds ready."""
    lines = 50000
    proc = subprocess.run(
        [sys.executable, "-c", RUN_ATTACHED_PIPES, str(isobox_home), str(busybox_rootfs),
         "sh", "-c", f"seq 1 {lines} & seq 1 {lines} >&2; wait"],
        capture_output=True, cwd=REPO, timeout=120, check=False)
    expected = "".join(f"{n}\n" for n in range(1, lines + 1)).encode()
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout == expected
    assert proc.stderr == expected
