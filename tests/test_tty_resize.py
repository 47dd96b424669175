"""`run -it` and `exec -it` keep the container's terminal the size of the user's terminal.

The user's terminal is a pty made here. `isobox` runs as the leader of a new session with
that pty as its controlling terminal, as under a real terminal emulator, so a size set on the
pty's master makes the kernel send SIGWINCH to isobox's foreground process group: nothing is
signalled by hand. Inside, a shell traps SIGWINCH and prints `stty size`, so the test sees the
change only once the container's own terminal has it (no polling, no sleeps).
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, docker_available

FIRST_SIZE = (20, 60)
NEW_SIZE = (33, 77)

# Prints the size on every SIGWINCH; ends with status 4 once it is NEW_SIZE. An early SIGWINCH
# (the first size reaching a terminal the shell already has) only prints.
REPORT_RESIZES = (
    f"trap 's=$(stty size); echo \"size:$s\"; [ \"$s\" = \"{NEW_SIZE[0]} {NEW_SIZE[1]}\" ] "
    "&& exit 4' WINCH; echo ready; while :; do read -r line; done"
)


def set_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


class UserTerminal:
    """`isobox ARGS` on a fresh pty that is its controlling terminal; we hold the master."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = os.openpty()
        set_size(self.master, *FIRST_SIZE)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_isobox.cli", *args], stdin=slave, stdout=slave,
            stderr=slave, cwd=REPO, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # noqa: PLW1509
        os.close(slave)
        self.seen = b""

    def read_until(self, marker: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self.master], [], [], left)[0], (
                f"never saw {marker!r}; the terminal showed {self.seen!r}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every process on the pty has gone
                chunk = b""
            assert chunk, f"the terminal closed before {marker!r}: {self.seen!r}"
            self.seen += chunk

    def resize(self, rows: int, columns: int) -> None:
        """What a terminal emulator does when its window changes size."""
        set_size(self.master, rows, columns)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminals() -> Iterator[list[UserTerminal]]:
    made: list[UserTerminal] = []
    yield made
    for terminal in made:
        terminal.close()


def isobox(*args: str, check: bool = True) -> str:
    return subprocess.run([sys.executable, "-m", "pytest_isobox.cli", *args], check=check,
                          capture_output=True, cwd=REPO, timeout=120).stdout.decode().strip()


@dataclass
class Engine:
    """The `isobox` flags that pick an engine, and a busybox image it holds."""

    flags: list[str]
    image: str

    def args(self, *args: str) -> list[str]:
        return [*self.flags, *args]


@pytest.fixture(params=["native", "docker"])
def engine(request: pytest.FixtureRequest, busybox_rootfs: Path) -> Iterator[Engine]:
    if request.param == "native":
        if os.geteuid() != 0:
            pytest.skip("needs root (native engine, rootful)")
        request.getfixturevalue("isobox_home")
    elif not docker_available():
        pytest.skip("no Docker daemon answers")
    made = Engine(["--engine", request.param], f"isobox-test/resize:{uuid.uuid4().hex[:10]}")
    isobox(*made.args("import", str(busybox_rootfs), made.image))
    yield made
    isobox(*made.args("rmi", "-f", made.image), check=False)


def converse_through_a_resize(terminals: list[UserTerminal], args: list[str]) -> None:
    terminal = UserTerminal(args)
    terminals.append(terminal)
    terminal.read_until(b"ready")
    terminal.resize(*NEW_SIZE)
    terminal.read_until(b"size:%d %d" % NEW_SIZE)
    assert terminal.wait() == 4, terminal.seen


def test_run_it_rm_follows_a_resize(engine: Engine, terminals: list[UserTerminal]) -> None:
    """Native: a non-persistent container's monitor shares isobox's process group."""
    name = f"isobox-test-resize-{uuid.uuid4().hex[:8]}"
    converse_through_a_resize(terminals, engine.args("run", "-it", "--rm", "--name", name,
                                                     engine.image, "sh", "-c", REPORT_RESIZES))
    assert name not in isobox(*engine.args("ps", "-a"))


def test_run_it_persistent_follows_a_resize(engine: Engine,
                                            terminals: list[UserTerminal]) -> None:
    """Native: a persistent container's monitor has a session of its own; isobox passes the
    signal on to it."""
    name = f"isobox-test-resize-{uuid.uuid4().hex[:8]}"
    try:
        converse_through_a_resize(terminals, engine.args("run", "-it", "--name", name,
                                                         engine.image, "sh", "-c",
                                                         REPORT_RESIZES))
    finally:
        isobox(*engine.args("rm", "-f", name), check=False)


def test_exec_it_follows_a_resize(engine: Engine, terminals: list[UserTerminal]) -> None:
    cid = isobox(*engine.args("run", "-d", engine.image, "sleep", "1000"))
    try:
        converse_through_a_resize(terminals, engine.args("exec", "-it", cid, "sh", "-c",
                                                         REPORT_RESIZES))
    finally:
        isobox(*engine.args("rm", "-f", cid), check=False)
