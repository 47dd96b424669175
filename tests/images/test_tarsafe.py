"""Tar entries and paths never escape the root they are extracted into or archived from."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerError, InvalidSpec
from pytest_isobox.images.tarsafe import (
    UnsafeArchiveEntry,
    archive_path,
    extract_context,
    extract_into,
)

from .tarhelp import make_tar, names


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(root, outside): a container rootfs and a host directory beside it that must stay intact."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("container\n")
    outside.mkdir()
    (outside / "secret").write_text("host\n")
    return root, outside


def _outside_untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_text() == "host\n"


@pytest.mark.parametrize("entries", [
    [("../secret", "file", b"x")],
    [("a/../../secret", "file", b"x")],
    [("/abs", "file", b"x")],
    [("link", "hardlink", "../outside/secret")],
])
def test_entry_names_that_climb_out_are_refused(layout, entries) -> None:
    root, outside = layout
    with pytest.raises(UnsafeArchiveEntry) as info:
        extract_into(root, "/", make_tar(*entries))
    assert entries[0][0] in str(info.value) or entries[0][-1] in str(info.value)
    assert isinstance(info.value, InvalidSpec)
    _outside_untouched(outside)


def test_writing_through_a_symlink_that_points_outside_is_refused(layout) -> None:
    root, outside = layout
    tar = make_tar(("evil", "symlink", "../../outside"), ("evil/pwned", "file", b"x"))
    with pytest.raises(UnsafeArchiveEntry, match="evil/pwned"):
        extract_into(root, "/", tar)
    _outside_untouched(outside)


def test_a_symlink_already_in_the_root_cannot_lead_out(layout) -> None:
    root, outside = layout
    (root / "data").symlink_to("../outside")
    with pytest.raises(UnsafeArchiveEntry):
        extract_into(root, "/data", make_tar(("pwned", "file", b"x")))
    with pytest.raises(UnsafeArchiveEntry):
        extract_into(root, "/", make_tar(("data/pwned", "file", b"x")))
    _outside_untouched(outside)


def test_absolute_symlinks_resolve_inside_the_root(layout) -> None:
    root, outside = layout
    (root / "hostish").symlink_to(str(outside))  # means <root>/<outside path> in the container
    (root / "etc-link").symlink_to("/etc")
    extract_into(root, "/", make_tar(("etc-link/hosts", "file", b"127.0.0.1 localhost\n"),
                                     ("hostish/pwned", "file", b"x")))
    assert (root / "etc" / "hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert (root / str(outside).lstrip("/") / "pwned").read_bytes() == b"x"
    _outside_untouched(outside)


def test_a_symlink_at_the_target_is_replaced_not_written_through(layout) -> None:
    root, outside = layout
    (root / "f").symlink_to("../outside/secret")
    extract_into(root, "/", make_tar(("f", "file", b"new\n")))
    assert not (root / "f").is_symlink()
    assert (root / "f").read_bytes() == b"new\n"
    _outside_untouched(outside)


def test_symlink_loops_are_refused(layout) -> None:
    root, _ = layout
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    with pytest.raises(UnsafeArchiveEntry, match="too many levels"):
        extract_into(root, "/", make_tar(("a/x", "file", b"x")))


def test_extract_into_keeps_owner_mode_and_mtime(layout) -> None:
    root, _ = layout
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("app/run.sh")
        info.size, info.mode, info.uid, info.gid, info.mtime = 3, 0o4755, 1234, 5678, 1_500_000_000
        tar.addfile(info, io.BytesIO(b"hi\n"))
    out.seek(0)
    (root / "srv").mkdir()
    extract_into(root, "/srv", out)
    st = (root / "srv" / "app" / "run.sh").lstat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777, int(st.st_mtime)) == (
        1234, 5678, 0o4755, 1_500_000_000)


def test_extract_into_needs_an_existing_directory(layout) -> None:
    root, _ = layout
    with pytest.raises(ContainerError, match="does not exist"):
        extract_into(root, "/nope", make_tar(("x", "file", b"x")))
    with pytest.raises(ContainerError, match="not a directory"):
        extract_into(root, "/etc/passwd", make_tar(("x", "file", b"x")))


def test_extract_into_never_swaps_a_directory_for_a_file(layout) -> None:
    root, _ = layout
    with pytest.raises(ContainerError, match="cannot overwrite directory 'etc'"):
        extract_into(root, "/", make_tar(("etc", "file", b"x")))
    assert (root / "etc" / "passwd").exists()


def test_extract_into_accepts_compressed_tars(layout) -> None:
    import gzip

    root, _ = layout
    extract_into(root, "/", io.BytesIO(gzip.compress(make_tar(("g", "file", b"z")).read())))
    assert (root / "g").read_bytes() == b"z"


def test_archive_path_names_entries_from_the_basename(layout) -> None:
    root, _ = layout
    assert names(archive_path(root, "/etc/passwd")) == ["passwd"]
    assert names(archive_path(root, "/etc")) == ["etc", "etc/passwd"]
    with tarfile.open(fileobj=io.BytesIO(archive_path(root, "etc/passwd"))) as tar:
        assert tar.extractfile("passwd").read() == b"container\n"


def test_archive_path_resolves_symlinks_inside_the_root(layout) -> None:
    root, outside = layout
    (root / "conf").symlink_to("/etc")
    with tarfile.open(fileobj=io.BytesIO(archive_path(root, "/conf/passwd"))) as tar:
        assert tar.extractfile("passwd").read() == b"container\n"
    (root / "up").symlink_to("../outside")
    with pytest.raises(UnsafeArchiveEntry):
        archive_path(root, "/up/secret")
    (root / "leaf").symlink_to(str(outside / "secret"))
    with tarfile.open(fileobj=io.BytesIO(archive_path(root, "/leaf"))) as tar:
        member = tar.getmember("leaf")
        assert member.issym() and member.linkname == str(outside / "secret")


def test_archive_path_of_a_missing_path(layout) -> None:
    root, _ = layout
    with pytest.raises(ContainerError, match="could not find '/nope'"):
        archive_path(root, "/nope")


def test_fractional_pax_mtimes_are_kept(layout) -> None:
    root, _ = layout
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("precise")
        info.mtime = 1_600_000_000.25
        tar.addfile(info, io.BytesIO(b""))
    out.seek(0)
    extract_into(root, "/", out)
    assert (root / "precise").stat().st_mtime_ns == 1_600_000_000_250_000_000


def test_the_root_may_be_reached_through_a_symlink(layout, tmp_path: Path) -> None:
    """The runtime passes /proc/<pid>/root, a magic link, for a running container."""
    root, _ = layout
    (tmp_path / "via").symlink_to(root)
    extract_into(tmp_path / "via", "/etc", make_tar(("hostname", "file", b"box\n")))
    assert (root / "etc" / "hostname").read_bytes() == b"box\n"
    assert names(archive_path(tmp_path / "via", "/etc/hostname")) == ["hostname"]


def test_an_entry_under_a_file_is_refused_naming_it(layout) -> None:
    root, _ = layout
    with pytest.raises(ContainerError, match="cannot extract tar entry 'etc/passwd/x'"):
        extract_into(root, "/", make_tar(("etc/passwd/x", "file", b"x")))


def test_a_directory_replaced_later_in_the_same_tar(layout) -> None:
    root, _ = layout
    (root / "srv").mkdir()
    extract_into(root, "/srv", make_tar(("d", "dir"), ("d/x", "file", b"1"), ("d/x", "file", b"2")))
    assert (root / "srv" / "d" / "x").read_bytes() == b"2"


def test_a_build_context_is_extracted_whole(tmp_path: Path) -> None:
    dest = tmp_path / "ctx"
    dest.mkdir()
    extract_context(dest, make_tar(("Dockerfile", "file", b"FROM scratch\n"), ("src", "dir"),
                                   ("src/app.py", "file", b"print(1)\n")))
    assert (dest / "Dockerfile").read_bytes() == b"FROM scratch\n"
    assert (dest / "src" / "app.py").read_bytes() == b"print(1)\n"


@pytest.mark.parametrize("entries", [
    [("../secret", "file", b"x")],
    [("up", "symlink", "../outside"), ("up/secret", "file", b"x")],
])
def test_a_build_context_never_writes_outside_its_directory(layout, entries) -> None:
    root, outside = layout
    with pytest.raises(UnsafeArchiveEntry):
        extract_context(root, make_tar(*entries))
    _outside_untouched(outside)


def test_a_build_context_that_is_no_tar_names_what_it_is(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="^build context: not a valid tar archive"):
        extract_context(tmp_path, io.BytesIO(b"FROM scratch\n" * 100))
