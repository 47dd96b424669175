"""Relaying a hijacked connection to a process's stdio: the client's bytes into a stdin
(an exec's own, or a container's kept open while it runs, as dockerd keeps `OpenStdin`), and
the process's output out as it comes (Docker's frames unless a tty)."""

from __future__ import annotations

import contextlib
import os
import select
import threading

from pytest_isobox.engine import ProcessStream
from pytest_isobox.server.http import ClientGone, Hijacked, frame


class StdinSink:
    """A stdin fd several writers share; closed once, under the lock, so no write ever goes
    to a reused fd number."""

    def __init__(self, fd: int, *, once: bool) -> None:
        self._fd: int | None = fd
        self._lock = threading.Lock()
        self.once = once  # StdinOnce: closed when the first attached client's stdin ends

    def write(self, data: bytes) -> bool:
        """False once closed or when the reader has gone (EPIPE)."""
        with self._lock:
            if self._fd is None:
                return False
            try:
                while data:
                    data = data[os.write(self._fd, data):]
            except OSError:
                self._close()
                return False
            return True

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def pump_stdin(conn: Hijacked, sink: StdinSink, *, close_at_eof: bool) -> None:
    """The client's bytes into `sink` until the client's write side ends."""
    while True:
        data = conn.read()
        if not data:
            break
        if not sink.write(data):
            return
    if close_at_eof:
        sink.close()


def start_stdin_pump(conn: Hijacked, sink: StdinSink, *, close_at_eof: bool) -> None:
    threading.Thread(target=pump_stdin, args=(conn, sink), daemon=True,
                     kwargs={"close_at_eof": close_at_eof}, name="isobox-stdin").start()


def pump_output(conn: Hijacked, stream: ProcessStream, *, tty: bool, stdout: bool,
                stderr: bool) -> None:
    """The stream's stdout and stderr to the client as they come, until both end. The fds
    are the stream's: they stay open for the caller to close."""
    which = {fd: number for fd, number in ((stream.stdout, 1), (stream.stderr, 2))
             if fd is not None}
    gone = False
    while which:
        ready, _, _ = select.select(list(which), [], [])
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: a tty whose last slave was closed
                data = b""
            if not data:
                del which[fd]
                continue
            if gone or not (stdout if which[fd] == 1 else stderr):
                continue  # drained, so the process never blocks on a full pipe
            try:
                conn.write(data if tty else frame(which[fd], data))
            except ClientGone:
                gone = True
