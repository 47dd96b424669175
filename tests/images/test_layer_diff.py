"""Overlay upper dirs to OCI layer tars and back: whiteouts, opaque dirs, determinism.

Making overlay whiteouts (mknod 0:0) and trusted.* xattrs needs root.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerError
from pytest_isobox.images.layercheck import differences
from pytest_isobox.images.tarsafe import TarExtractor
from pytest_isobox.images.tartree import write_handover_tree, write_tree
from tests.conftest import needs_root

from .tarhelp import make_tar

pytestmark = needs_root

CAP_NET_BIND = bytes.fromhex("0100000200040000000000000000000000000000")


def _whiteout(path: Path) -> None:
    os.mknod(path, 0o020000, os.makedev(0, 0))


@pytest.fixture
def upper(tmp_path: Path) -> Path:
    """An overlay upper dir as a container leaves it: a new file, deletions, an opaque dir."""
    up = tmp_path / "upper"
    (up / "etc").mkdir(parents=True)
    (up / "etc" / "motd").write_text("hello\n")
    _whiteout(up / "etc" / "group")
    (up / "var").mkdir()
    os.setxattr(up / "var", "trusted.overlay.opaque", b"y")
    os.setxattr(up / "var", "trusted.overlay.origin", b"\x00junk")
    (up / "var" / "new").write_text("n\n")
    (up / "bin").mkdir()
    (up / "bin" / "ping").write_bytes(b"\x7fELF")
    os.chown(up / "bin" / "ping", 0, 1234)
    os.chmod(up / "bin" / "ping", 0o4755)
    os.setxattr(up / "bin" / "ping", "security.capability", CAP_NET_BIND)
    os.link(up / "bin" / "ping", up / "bin" / "ping6")
    (up / "bin" / "sh").symlink_to("busybox")
    for path in sorted(up.rglob("*"), reverse=True):
        os.utime(path, (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    return up


def _tar_of(root: Path, overlay_diff: bool = True) -> bytes:
    out = io.BytesIO()
    write_tree(root, out, overlay_diff=overlay_diff)
    return out.getvalue()


def test_upper_dir_becomes_a_tar_with_oci_whiteouts(upper: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(_tar_of(upper))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["bin", "bin/ping", "bin/ping6", "bin/sh", "etc", "etc/.wh.group",
                     "etc/motd", "var", "var/.wh..wh..opq", "var/new"]
    by_name = {m.name: m for m in members}
    wh = by_name["etc/.wh.group"]
    assert wh.isfile() and wh.size == 0 and wh.mode == 0o600
    assert by_name["var/.wh..wh..opq"].isfile()
    assert by_name["bin/ping6"].islnk() and by_name["bin/ping6"].linkname == "bin/ping"
    ping = by_name["bin/ping"]
    assert (ping.mode, ping.uid, ping.gid, ping.mtime) == (0o4755, 0, 1234, 1_600_000_000)
    assert ping.pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == CAP_NET_BIND
    assert by_name["bin/sh"].issym() and by_name["bin/sh"].linkname == "busybox"
    assert not any("trusted.overlay" in k for m in members for k in m.pax_headers)


def test_the_same_tree_always_gives_the_same_bytes(upper: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(upper), str(copy)], check=True)
    assert _tar_of(upper) == _tar_of(upper) == _tar_of(copy)
    (copy / "etc" / "motd").write_text("changed\n")
    os.utime(copy / "etc" / "motd", (1_600_000_000, 1_600_000_000))
    assert _tar_of(copy) != _tar_of(upper)


def test_an_empty_upper_dir_gives_no_entries(tmp_path: Path) -> None:
    assert write_tree(tmp_path, io.BytesIO(), overlay_diff=True) == 0


def test_rootless_overlay_xattrs_count_as_overlays_own(upper: Path) -> None:
    os.removexattr(upper / "var", "trusted.overlay.opaque")
    os.setxattr(upper / "var", "user.overlay.opaque", b"y")
    with tarfile.open(fileobj=io.BytesIO(_tar_of(upper))) as tar:
        assert "var/.wh..wh..opq" in tar.getnames()
        assert not any("overlay" in k for m in tar.getmembers() for k in m.pax_headers)


def test_redirected_dirs_cannot_be_committed(upper: Path) -> None:
    os.setxattr(upper / "var", "trusted.overlay.redirect", b"/old")
    with pytest.raises(ContainerError, match="'var'.*redirect_dir=off"):
        write_tree(upper, io.BytesIO(), overlay_diff=True)


def _unpack(data: bytes, dest: Path) -> None:
    dest.mkdir()
    extractor = TarExtractor(dest, overlay_whiteouts=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
            extractor.extract_all(tar)
    finally:
        extractor.close()


def test_unpacking_turns_oci_whiteouts_into_overlay_ones(tmp_path: Path) -> None:
    layer = make_tar(("etc/.wh.group", "file"), ("var", "dir"), ("var/.wh..wh..opq", "file"),
                     ("var/new", "file", b"n"))
    _unpack(layer.read(), tmp_path / "diff")
    st = os.lstat(tmp_path / "diff" / "etc" / "group")
    assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0 and st.st_mode & 0o020000
    assert os.getxattr(tmp_path / "diff" / "var", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(tmp_path / "diff" / "var")) == ["new"]
    assert not (tmp_path / "diff" / "etc" / ".wh.group").exists()


def test_unpacked_layer_tars_back_to_the_same_bytes(upper: Path, tmp_path: Path) -> None:
    original = _tar_of(upper)
    _unpack(original, tmp_path / "diff")
    assert _tar_of(tmp_path / "diff") == original
    assert os.getxattr(tmp_path / "diff" / "bin" / "ping", "security.capability") == CAP_NET_BIND
    assert os.stat(tmp_path / "diff" / "bin" / "ping").st_ino == \
        os.stat(tmp_path / "diff" / "bin" / "ping6").st_ino


def test_a_handed_over_upper_dir_becomes_what_its_tar_unpacks_to(upper: Path,
                                                                  tmp_path: Path) -> None:
    socket_path = upper / "etc" / "ctl.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(socket_path))
    os.utime(upper / "etc", (1_600_000_000, 1_600_000_000))
    expected = _tar_of(upper)
    out = io.BytesIO()
    count, content_bytes = write_handover_tree(upper, out)
    assert out.getvalue() == expected  # the same layer tar, byte for byte
    with tarfile.open(fileobj=io.BytesIO(expected)) as tar:
        assert count == len(tar.getmembers())
    assert content_bytes == len("hello\n") + len("n\n") + len(b"\x7fELF")  # ping6 is a link
    assert not socket_path.exists()
    assert os.listxattr(upper / "var") == ["trusted.overlay.opaque"]  # origin dropped
    with tarfile.open(fileobj=io.BytesIO(expected)) as tar:
        assert differences(upper, tar) == []
    assert _tar_of(upper) == expected


def test_trusted_overlay_xattrs_in_a_tar_are_ignored(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("d")
        info.type = tarfile.DIRTYPE
        info.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc",
                            "SCHILY.xattr.user.overlay.opaque": "y",
                            "SCHILY.xattr.user.note": "kept"}
        tar.addfile(info)
    _unpack(out.getvalue(), tmp_path / "diff")
    assert os.listxattr(tmp_path / "diff" / "d") == ["user.note"]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_unpacked_layers_stack_under_overlay(busybox_rootfs: Path, upper: Path,
                                             tmp_path: Path) -> None:
    """Mounted in a private mount namespace that dies with the command: nothing can leak."""
    base, top = tmp_path / "base", tmp_path / "top"
    _unpack(_tar_of(busybox_rootfs, overlay_diff=False), base)
    _unpack(_tar_of(upper), top)
    (busybox_var := base / "var" / "old").write_text("old\n")
    assert busybox_var.exists()
    script = (f"mkdir -p {tmp_path}/m && mount -t overlay overlay "
              f"-o lowerdir={top}:{base} {tmp_path}/m && cd {tmp_path}/m && "
              "cat etc/motd && ls etc && echo --- && ls var")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                            text=True, check=True)
    motd, _, var = result.stdout.partition("---\n")
    assert motd.splitlines() == ["hello", "motd", "passwd"]
    assert var.split() == ["new"]
