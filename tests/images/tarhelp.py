"""Building small tars in memory for tests."""

from __future__ import annotations

import io
import tarfile


def make_tar(*entries: tuple) -> io.BytesIO:
    """Entries: (name, "file", data) | (name, "dir") | (name, "symlink", target) |
    (name, "hardlink", target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, *rest in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "file":
                data = rest[0] if rest else b""
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, rest[0]
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, rest[0]
            tar.addfile(info)
    out.seek(0)
    return out


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()
