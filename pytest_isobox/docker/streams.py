"""Docker's multiplexed stdout/stderr framing (logs, attach, exec without a tty).

Each frame is an 8-byte header — stream type (0 stdin, 1 stdout, 2 stderr), three zero
bytes, a big-endian 32-bit length — then that many bytes. With a tty there is no framing:
everything is stdout. Frames come out in the order the daemon wrote them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import IO

from pytest_isobox.engine import IsoboxError, LogStream

_HEADER = struct.Struct(">BxxxL")
_STREAMS: dict[int, LogStream] = {0: "stdout", 1: "stdout", 2: "stderr"}
_RAW_CHUNK = 65536


def _read_exactly(source: IO[bytes], size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = source.read(size - len(data))
        if not piece:
            break
        data += piece
    return data


def demultiplex(source: IO[bytes]) -> Iterator[tuple[LogStream, bytes]]:
    """Frames of a multiplexed stream until end of stream."""
    while True:
        header = _read_exactly(source, _HEADER.size)
        if not header:
            return
        if len(header) < _HEADER.size:
            raise IsoboxError(f"Docker stream ended inside a frame header ({len(header)} bytes)")
        stream_type, length = _HEADER.unpack(header)
        if stream_type not in _STREAMS:
            raise IsoboxError(f"Docker stream has an unknown frame type {stream_type}")
        payload = _read_exactly(source, length)
        if len(payload) < length:
            raise IsoboxError(f"Docker stream ended inside a {length}-byte frame")
        yield _STREAMS[stream_type], payload


def raw_chunks(source: IO[bytes]) -> Iterator[tuple[LogStream, bytes]]:
    """A tty's stream: every byte is stdout, passed on as soon as it arrives."""
    while True:
        chunk = source.read1(_RAW_CHUNK) if hasattr(source, "read1") else source.read(_RAW_CHUNK)
        if not chunk:
            return
        yield "stdout", chunk


def read_output(source: IO[bytes], *, tty: bool) -> Iterator[tuple[LogStream, bytes]]:
    return raw_chunks(source) if tty else demultiplex(source)


class FrameParser:
    """Incremental demultiplexing for bytes that arrive in arbitrary pieces (a select loop)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[LogStream, bytes]]:
        self._buffer += data
        frames: list[tuple[LogStream, bytes]] = []
        while len(self._buffer) >= _HEADER.size:
            stream_type, length = _HEADER.unpack_from(self._buffer)
            if len(self._buffer) < _HEADER.size + length:
                break
            payload = self._buffer[_HEADER.size:_HEADER.size + length]
            self._buffer = self._buffer[_HEADER.size + length:]
            frames.append((_STREAMS.get(stream_type, "stdout"), payload))
        return frames
