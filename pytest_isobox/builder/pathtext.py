"""A path written as pathlib writes it, without importing pathlib (with urllib.parse and
ipaddress, about 3 ms of a cached `isobox build`, which names its Dockerfile in errors)."""

from __future__ import annotations

import os


def path_text(path: str | os.PathLike) -> str:
    """`str(pathlib.PurePosixPath(path))`: `.` components, repeated and trailing slashes
    dropped (a leading `//`, and only that, kept as POSIX allows); `.` for nothing left."""
    text = os.fspath(path)
    root = "//" if text[:2] == "//" and text[2:3] != "/" else "/" if text[:1] == "/" else ""
    return root + "/".join(part for part in text.split("/") if part and part != ".") or "."
