"""Host-side extraction of `cp` archives: nothing lands outside the destination, on Pythons
with tarfile's data filter and without it (Debian 12's 3.11.2)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pytest_isobox.copying import _extract_inside
from pytest_isobox.engine import ContainerError


def _tar(*members: tuple[str, str, bytes]) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, link, data in members:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return tarfile.open(fileobj=buf)


def test_plain_tree_is_extracted(tmp_path: Path) -> None:
    tar = _tar(("d/f", "", b"x"), ("d/l", "f", b""))
    _extract_inside(tar, tar.getmembers(), tmp_path)
    assert (tmp_path / "d" / "f").read_bytes() == b"x"
    assert (tmp_path / "d" / "l").resolve() == tmp_path / "d" / "f"


@pytest.mark.parametrize("members", [
    [("../escape", "", b"x")],
    [("/abs", "", b"x")],
    [("d/l", "/etc", b"")],
    [("d/l", "../..", b"")],
    [("l", ".", b""), ("l/../../escape", "", b"x")],
])
def test_escapes_are_refused(tmp_path: Path, members) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    tar = _tar(*members)
    with pytest.raises(ContainerError, match="leaves"):
        _extract_inside(tar, tar.getmembers(), dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]
