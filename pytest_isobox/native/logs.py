"""A container's log: stdout and stderr kept apart, in the order the monitor read them.

One append-only file of records (stream, time, length, bytes). Only the monitor writes it;
any process may read it, and `read_log(follow=True)` waits on inotify and on the monitor's
exit (never sleeps) until the container has ended and every record has been read.
"""

from __future__ import annotations

import os
import struct
import time

from pytest_isobox.polling import readable

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: `isobox logs` loads neither pathlib nor specs.py)
    from collections.abc import Iterator
    from pathlib import Path

    from pytest_isobox.engine import LogStream

_HEADER = struct.Struct("<BdI")
STREAMS: dict[int, LogStream] = {1: "stdout", 2: "stderr"}


class LogWriter:
    """Appends records; one write(2) each, so a reader never sees two records interleaved."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, stream: int, data: bytes) -> None:
        os.write(self.fd, _HEADER.pack(stream, time.time(), len(data)) + data)

    def close(self) -> None:
        os.close(self.fd)


def _records(buf: bytearray) -> Iterator[tuple[LogStream, float, bytes]]:
    """Pop every complete record off the front of `buf`: (stream, time written, bytes)."""
    offset = 0
    while len(buf) - offset >= _HEADER.size:
        stream, when, length = _HEADER.unpack_from(buf, offset)
        end = offset + _HEADER.size + length
        if end > len(buf):
            break
        yield STREAMS.get(stream, "stdout"), when, bytes(buf[offset + _HEADER.size:end])
        offset = end
    del buf[:offset]


def _tail(chunks: list[tuple[LogStream, float, bytes]],
          lines: int) -> list[tuple[LogStream, float, bytes]]:
    split = [(s, t, line) for s, t, data in chunks for line in data.splitlines(keepends=True)]
    return split[-lines:] if lines > 0 else []


def read_log(path: Path, *, stdout: bool = True, stderr: bool = True, follow: bool = False,
             tail: int | None = None, monitor_fd: int | None = None,
             ) -> Iterator[tuple[LogStream, bytes]]:
    """Yield (stream, bytes) in order. With follow, go on until `monitor_fd` (a pidfd of the
    container's monitor, or None when no monitor runs) reports the monitor's exit."""
    for stream, _, data in read_log_timed(path, stdout=stdout, stderr=stderr, follow=follow,
                                          tail=tail, monitor_fd=monitor_fd):
        yield stream, data


def read_log_timed(path: Path, *, stdout: bool = True, stderr: bool = True,
                   follow: bool = False, tail: int | None = None, monitor_fd: int | None = None,
                   ) -> Iterator[tuple[LogStream, float, bytes]]:
    """read_log with the time each piece was written (`logs -t`, `--since`, `--until`)."""
    wanted = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    watch = None
    try:
        if follow and monitor_fd is not None:
            from pytest_isobox.native import linux  # (ctypes: only for following)

            watch = linux.inotify_init()
            watched = linux.inotify_add_watch(watch, str(path), linux.IN_MODIFY)
        buf = bytearray()
        first = True
        while True:
            while chunk := os.read(fd, 1 << 16):
                buf += chunk
            found = [r for r in _records(buf) if r[0] in wanted]
            if first and tail is not None:
                found = _tail(found, tail)
            first = False
            yield from found
            if watch is None:
                return
            ready = readable([watch, monitor_fd], None)
            if monitor_fd in ready:  # the monitor wrote its last record; read them, then stop
                linux.inotify_close(watch, watched)
                watch = None
                continue
            _drain(watch)
    finally:
        os.close(fd)
        if watch is not None:
            linux.inotify_close(watch, watched)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
