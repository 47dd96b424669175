"""Wiring the local terminal (or pipes) to a hijacked attach/exec stream, as `docker -it` does.

While attached with a tty the local terminal is in raw mode (keys go to the container as
typed, ^C included) and is restored afterwards, even on errors. Without a tty the stream is
demultiplexed onto our stdout and stderr; end of our stdin half-closes the stream.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import termios
import threading
import tty
from collections.abc import Callable, Iterator

from pytest_isobox.docker.client import HijackedStream
from pytest_isobox.docker.streams import FrameParser

_CHUNK = 65536


@contextlib.contextmanager
def raw_terminal(fd: int, enabled: bool) -> Iterator[None]:
    """The terminal at `fd` in raw mode for the block, restored on the way out."""
    if not enabled or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def resize_events(enabled: bool) -> Iterator[int | None]:
    """A file descriptor that becomes readable when our terminal changes size (SIGWINCH).

    The signal handler only writes a byte, so the resize itself happens in `pump`'s loop and
    never inside a request that the signal interrupted. Only the main thread may take
    signals; elsewhere (or when not enabled) there are no events.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield None
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def note(signum: int, frame: object) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(write_fd, b"w")

    previous = signal.signal(signal.SIGWINCH, note)
    try:
        yield read_fd
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(read_fd)
        os.close(write_fd)


def terminal_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal at `fd`, or None when it is not a terminal."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


def pump(stream: HijackedStream, *, tty: bool, stdin: bool, stdin_fd: int = 0,
         stdout_fd: int = 1, stderr_fd: int = 2, resize_fd: int | None = None,
         on_resize: Callable[[], None] | None = None) -> None:
    """Copy stdin to the container and its output to ours until the container side closes.

    When `resize_fd` becomes readable, `on_resize` is called from this loop.
    """
    parser = None if tty else FrameParser()
    selector = selectors.DefaultSelector()
    selector.register(stream.sock, selectors.EVENT_READ, "remote")
    if stdin:
        selector.register(stdin_fd, selectors.EVENT_READ, "local")
    if resize_fd is not None and on_resize is not None:
        selector.register(resize_fd, selectors.EVENT_READ, "resize")
    try:
        while True:
            pending = stream.pending()  # TLS: decrypted bytes select cannot see
            ready = [key.data for key, _ in selector.select(0 if pending else None)]
            if pending and "remote" not in ready:
                ready.append("remote")
            if "resize" in ready:
                os.read(resize_fd, 512)  # type: ignore[arg-type]
                on_resize()  # type: ignore[misc]
            if "local" in ready:
                data = os.read(stdin_fd, _CHUNK)
                if data:
                    stream.sock.sendall(data)
                else:
                    selector.unregister(stdin_fd)
                    stream.close_stdin()
            if "remote" in ready:
                data = stream.recv(_CHUNK)
                if not data:
                    return
                if parser is None:
                    _write_all(stdout_fd, data)
                else:
                    for name, payload in parser.feed(data):
                        _write_all(stderr_fd if name == "stderr" else stdout_fd, payload)
    finally:
        selector.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
