"""The daemon's hijacked streams as the seam's ProcessStream (capability "streams"): pipes
the caller reads and writes, two threads between them and the daemon's socket (output
demultiplexed unless a tty; the caller's stdin EOF half-closes the socket)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from pytest_isobox.docker.client import HijackedStream
from pytest_isobox.docker.streams import FrameParser
from pytest_isobox.engine import ProcessStream

_CHUNK = 65536


def _write_all(fd: int, data: bytes) -> bool:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the caller closed its end: keep draining the socket
        return False
    return True


def _output(hijacked: HijackedStream, tty: bool, out_w: int, err_w: int | None) -> None:
    parser = None if tty else FrameParser()
    targets = {"stdout": out_w, "stderr": err_w if err_w is not None else out_w}
    try:
        while data := hijacked.recv(_CHUNK):
            if parser is None:
                _write_all(out_w, data)
                continue
            for stream, payload in parser.feed(data):
                _write_all(targets[stream], payload)
    except OSError:
        pass
    finally:
        for fd in {out_w, err_w} - {None}:
            with contextlib.suppress(OSError):
                os.close(fd)  # type: ignore[arg-type]


def _input(hijacked: HijackedStream, in_r: int) -> None:
    try:
        while data := os.read(in_r, _CHUNK):
            hijacked.sock.sendall(data)
    except OSError:
        pass
    finally:
        os.close(in_r)
        with contextlib.suppress(OSError):
            hijacked.close_stdin()


def relay(hijacked: HijackedStream, *, tty: bool, stdin: bool, output: bool,
          exit_code: Callable[[], int],
          resize: Callable[[int, int], None] | None = None) -> ProcessStream:
    """`hijacked` wired to new pipes; `exit_code` is asked once the output has ended."""
    out_r = err_r = in_w = None
    if output:
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_w = None
        if not tty:
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
    else:
        out_w = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        err_w = None
    reader = threading.Thread(target=_output, args=(hijacked, tty, out_w, err_w),
                              daemon=True, name="isobox-docker-output")
    reader.start()
    if stdin:
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        threading.Thread(target=_input, args=(hijacked, in_r), daemon=True,
                         name="isobox-docker-stdin").start()
    lock = threading.Lock()
    result: list[int] = []

    def wait() -> int:
        with lock:
            if not result:
                reader.join()
                hijacked.close()
                result.append(exit_code())
            return result[0]

    return ProcessStream(in_w, out_r, err_r, wait, resize=resize)
