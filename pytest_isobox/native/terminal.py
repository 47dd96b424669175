"""The caller's terminal during `run -it` / `exec -it`: raw mode, window size, relay.

Raw mode is restored on every way out; a caller without a terminal is left untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import termios
import tty
from collections.abc import Iterator


def copy_window_size(sources: tuple[int | None, ...], master: int) -> None:
    """Give a container's pty the size of the first source fd that is a terminal."""
    for fd in sources:
        if fd is not None and os.isatty(fd):
            with contextlib.suppress(OSError):
                size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(master, termios.TIOCSWINSZ, size)
            return


@contextlib.contextmanager
def raw_terminal(fd: int = 0) -> Iterator[None]:
    """`fd`'s terminal in raw mode (keys go to the container), restored afterwards."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def relay_pty(master: int, stdin: bool) -> None:
    """Copy our stdin to the pty and the pty to our stdout until the pty closes."""
    sources = [master, 0] if stdin else [master]
    while True:
        for fd in select.select(sources, [], [])[0]:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: every process on the pty has gone
                data = b""
            if fd == master:
                if not data:
                    return
                os.write(1, data)
            elif data:
                os.write(master, data)
            else:
                sources.remove(0)
