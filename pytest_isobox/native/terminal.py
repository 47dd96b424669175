"""The caller's terminal during `run -it` / `exec -it`: raw mode, window size, relay.

Raw mode is restored on every way out; a caller without a terminal is left untouched. The
container's terminal follows the caller's size: a resize makes the kernel send SIGWINCH to the
caller's foreground process group, and whoever holds the container's pty master then copies
the new size to it (the kernel in turn signals the container's foreground process group).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import termios
import threading
import tty
from collections.abc import Iterator
from typing import Self

from pytest_isobox.polling import readable


def copy_window_size(sources: tuple[int | None, ...], master: int) -> None:
    """Give a container's pty the size of the first source fd that is a terminal."""
    for fd in sources:
        if fd is not None and os.isatty(fd):
            with contextlib.suppress(OSError):
                size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(master, termios.TIOCSWINSZ, size)
            return


class WindowSizeFollower:
    """Keeps a pty master the size of the caller's terminal, from inside a poll loop.

    SIGWINCH arrives as a readable `fd` (the self-pipe trick): the handler only writes a byte,
    so the resize itself happens in the loop, never inside a call the signal interrupted. The
    size is copied once on creation, after the handler is in place, so no change is missed.
    Signal handlers belong to the main thread: elsewhere `fd` is None and only that first
    copy is made. Closing puts the previous handler back.
    """

    def __init__(self, sources: tuple[int | None, ...], master: int) -> None:
        self.sources, self.master = sources, master
        self.fd: int | None = None
        if threading.current_thread() is threading.main_thread():
            self.fd, self._write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            self._previous = signal.signal(signal.SIGWINCH, self._note)
        copy_window_size(sources, master)

    def _note(self, signum: int, frame: object) -> None:
        with contextlib.suppress(BlockingIOError):  # a byte is already waiting
            os.write(self._write_fd, b"w")

    def follow(self) -> None:
        """Copy the size now (call when `fd` is readable)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 512):  # type: ignore[arg-type]
                pass
        copy_window_size(self.sources, self.master)

    def close(self) -> None:
        if self.fd is not None:
            signal.signal(signal.SIGWINCH, self._previous)
            os.close(self.fd)
            os.close(self._write_fd)
            self.fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WindowChangeForwarder:
    """Passes our SIGWINCH on to one process, named with `to` once it is known.

    For a monitor in a session of its own (a persistent container's), which never gets its
    caller's terminal signals. A change seen before `to` is passed on by `to`; one before
    this object existed is covered by the monitor's own first copy of the size. The process
    is held by a pidfd, so a signal never reaches another process that reused its pid. Main
    thread only (elsewhere, or when not enabled, nothing is passed on); closing puts the
    previous handler back.
    """

    def __init__(self, enabled: bool = True) -> None:
        self._pidfd: int | None = None
        self._pending = False
        self._installed = enabled and threading.current_thread() is threading.main_thread()
        if self._installed:
            self._previous = signal.signal(signal.SIGWINCH, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self._pending = True
        self._forward()

    def _forward(self) -> None:
        if self._pidfd is not None and self._pending:
            self._pending = False
            with contextlib.suppress(ProcessLookupError):  # it has ended
                signal.pidfd_send_signal(self._pidfd, signal.SIGWINCH)

    def to(self, pid: int) -> None:
        """Forward to `pid` from now on; it must be alive (say, our unreaped child)."""
        if self._installed and self._pidfd is None:
            with contextlib.suppress(ProcessLookupError):
                self._pidfd = os.pidfd_open(pid)
            self._forward()

    def close(self) -> None:
        if self._installed:
            signal.signal(signal.SIGWINCH, self._previous)
            self._installed = False
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    """Copy our stdin to the pty and the pty to our stdout until the pty closes; keep the
    pty the size of our terminal."""
    with WindowSizeFollower((0, 1), master) as window:
        sources = [master, 0] if stdin else [master]
        if window.fd is not None:
            sources.insert(0, window.fd)
        while True:
            for fd in readable(sources, None):
                if fd == window.fd:
                    window.follow()
                    continue
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
