"""Tars as Docker accepts them: plain, gzip, bzip2, xz or zstd, recognised by their magic bytes."""

from __future__ import annotations

import bz2
import gzip
import lzma
from typing import IO

from pytest_isobox.engine import InvalidSpec

_MAGIC_LEN = 6
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Rewound:
    """A read-only stream that serves again the first bytes read to recognise its format."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if size is None or size < 0:
            data, self._head = self._head + self._rest.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data


def _zstd_reader(stream: IO[bytes], what: str) -> IO[bytes]:
    """zstd through the `zstandard` package (Python < 3.14 has no zstd of its own)."""
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+

        return zstd.ZstdFile(stream, "rb")  # type: ignore[no-any-return]
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        raise InvalidSpec(f"{what}: zstd compressed, and the zstandard package is not "
                          "installed (pip install zstandard)") from None
    return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)


def decompressed(stream: IO[bytes], what: str) -> IO[bytes]:
    """`stream` (anything with `read`) with its compression removed (gzip, bzip2, xz, zstd)."""
    head = b""
    while len(head) < _MAGIC_LEN and (chunk := stream.read(_MAGIC_LEN - len(head))):
        head += chunk
    rewound = _Rewound(head, stream)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=rewound, mode="rb")  # type: ignore[arg-type]
    if head.startswith(b"BZh"):
        return bz2.BZ2File(rewound, "rb")  # type: ignore[arg-type]
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(rewound, "rb")  # type: ignore[arg-type]
    if head.startswith(_ZSTD_MAGIC):
        return _zstd_reader(rewound, what)
    return rewound  # type: ignore[return-value]
