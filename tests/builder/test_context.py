"""The build context: COPY source selection and path safety, checksums, the stat cache, tars."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pytest_isobox.builder.cache import BuildCache, step_key
from pytest_isobox.builder.context import (
    BuildContext,
    CopyEntry,
    StatCache,
    entries_from_tar,
    write_tar,
)
from pytest_isobox.builder.copying import CopyStep
from pytest_isobox.builder.dockerignore import DockerIgnore
from pytest_isobox.engine import BuildError

OLD = 1_600_000_000  # an mtime far from now, so the stat cache trusts it


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (OLD, OLD))
    return root


def _never_dir(_path: str) -> bool:
    return False


@pytest.fixture
def ctx_dir(tmp_path: Path) -> Path:
    return _tree(tmp_path / "ctx", {"app.py": "print(1)\n", "lib/a.py": "a", "lib/b.py": "b",
                                    "lib/sub/c.txt": "c", "notes.log": "log"})


def test_file_into_directory_and_renamed(ctx_dir: Path) -> None:
    ctx = BuildContext(ctx_dir)
    into = ctx.entries(["app.py"], "/srv/", dest_is_dir=_never_dir)
    assert [(e.dest, e.kind) for e in into] == [("/srv/app.py", "file")]
    renamed = ctx.entries(["app.py"], "/srv/main.py", dest_is_dir=_never_dir)
    assert renamed[0].dest == "/srv/main.py"
    existing_dir = ctx.entries(["app.py"], "/tmp", dest_is_dir=lambda p: p == "/tmp")
    assert existing_dir[0].dest == "/tmp/app.py"


def test_directory_copies_its_contents(ctx_dir: Path) -> None:
    entries = BuildContext(ctx_dir).entries(["lib"], "/opt/lib", dest_is_dir=_never_dir)
    assert [e.dest for e in entries] == ["/opt/lib/a.py", "/opt/lib/b.py", "/opt/lib/sub",
                                         "/opt/lib/sub/c.txt"]


def test_globs_and_several_sources_need_a_directory(ctx_dir: Path) -> None:
    ctx = BuildContext(ctx_dir)
    entries = ctx.entries(["lib/*.py"], "/x/", dest_is_dir=_never_dir)
    assert [e.dest for e in entries] == ["/x/a.py", "/x/b.py"]
    with pytest.raises(BuildError, match="must be a directory and end with a '/'"):
        ctx.entries(["lib/*.py"], "/x", dest_is_dir=_never_dir)
    with pytest.raises(BuildError, match="matches nothing"):
        ctx.entries(["*.nothing"], "/x/", dest_is_dir=_never_dir)


@pytest.mark.parametrize("src", ["../etc/passwd", "lib/../../x", ".."])
def test_sources_never_escape_the_context(ctx_dir: Path, src: str) -> None:
    with pytest.raises(BuildError, match="outside the build context"):
        BuildContext(ctx_dir).entries([src], "/x", dest_is_dir=_never_dir)


def test_absolute_source_is_relative_to_the_context(ctx_dir: Path) -> None:
    entries = BuildContext(ctx_dir).entries(["/app.py"], "/x", dest_is_dir=_never_dir)
    assert entries[0].source == str(ctx_dir / "app.py")


def test_symlink_pointing_out_is_refused(ctx_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    (ctx_dir / "out").symlink_to(tmp_path / "secret")
    (ctx_dir / "in").symlink_to("app.py")
    ctx = BuildContext(ctx_dir)
    with pytest.raises(BuildError, match="points outside the build context"):
        ctx.entries(["out"], "/x", dest_is_dir=_never_dir)
    followed = ctx.entries(["in"], "/x/", dest_is_dir=_never_dir)
    assert followed[0].dest == "/x/in" and followed[0].source == str(ctx_dir / "app.py")


def test_symlinks_inside_a_copied_directory_stay_links(ctx_dir: Path) -> None:
    (ctx_dir / "lib" / "link").symlink_to("/etc/passwd")
    entries = BuildContext(ctx_dir).entries(["lib"], "/l", dest_is_dir=_never_dir)
    link = next(e for e in entries if e.dest == "/l/link")
    assert (link.kind, link.link, link.source) == ("symlink", "/etc/passwd", None)


def test_dockerignore_excludes_sources(ctx_dir: Path) -> None:
    ctx = BuildContext(ctx_dir, DockerIgnore(["*.log", "lib/sub"]))
    with pytest.raises(BuildError, match="excluded by .dockerignore"):
        ctx.entries(["notes.log"], "/x", dest_is_dir=_never_dir)
    everything = [e.dest for e in ctx.entries(["."], "/app/", dest_is_dir=_never_dir)]
    assert "/app/notes.log" not in everything and "/app/lib/sub/c.txt" not in everything
    assert "/app/app.py" in everything


def test_checksum_covers_content_mode_and_names_not_mtime(ctx_dir: Path) -> None:
    def checksum() -> str:
        ctx = BuildContext(ctx_dir)
        return ctx.checksum(ctx.entries(["."], "/app/", dest_is_dir=_never_dir))

    first = checksum()
    os.utime(ctx_dir / "lib" / "a.py", (OLD + 5, OLD + 5))
    assert checksum() == first
    (ctx_dir / "lib" / "a.py").chmod(0o755)
    assert checksum() != first
    (ctx_dir / "lib" / "a.py").chmod(0o644)
    assert checksum() == first
    (ctx_dir / "lib" / "a.py").write_text("A")
    assert checksum() != first


def test_stat_cache_skips_reading_unchanged_files(ctx_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = ctx_dir / "app.py"
    cache = StatCache(tmp_path / "stat.json")
    before = cache.digest(str(path), os.stat(path))
    cache.save()

    real_open = open

    def no_reading(file: object, *args: object, **kwargs: object) -> object:
        if os.fspath(file) == str(path):  # (the stat cache's own file is read, with open)
            raise AssertionError(f"read {file} although its stat did not change")
        return real_open(file, *args, **kwargs)

    reloaded = StatCache(tmp_path / "stat.json")
    monkeypatch.setattr("builtins.open", no_reading)
    assert reloaded.digest(str(path), os.stat(path)) == before


def test_stat_cache_sees_content_changed_with_mtime_put_back(ctx_dir: Path,
                                                             tmp_path: Path) -> None:
    path = ctx_dir / "app.py"
    cache = StatCache(tmp_path / "stat.json")
    before = cache.digest(str(path), os.stat(path))
    cache.save()
    with open(path, "r+") as f:  # same inode, size and mtime: only ctime tells
        f.write("print(2)\n")
    os.utime(path, (OLD, OLD))
    assert StatCache(tmp_path / "stat.json").digest(str(path), os.stat(path)) != before


def test_stat_cache_does_not_trust_files_changed_just_now(tmp_path: Path) -> None:
    path = tmp_path / "fresh"
    path.write_text("x")
    cache = StatCache(tmp_path / "stat.json")
    cache.digest(str(path), os.stat(path))
    cache.save()
    assert not (tmp_path / "stat.json").exists()


def test_write_tar_applies_chown_chmod_and_defaults_to_root(ctx_dir: Path) -> None:
    entries = BuildContext(ctx_dir).entries(["lib"], "/opt/lib", dest_is_dir=_never_dir)
    entries.append(CopyEntry(dest="/opt/doc", kind="file", data=b"here"))
    for chown, chmod, owner, mode in ((None, None, (0, 0), None), ((10, 20), 0o700, (10, 20),
                                                                   0o700)):
        buf = io.BytesIO()
        write_tar(entries, buf, chown=chown, chmod=chmod)
        buf.seek(0)
        with tarfile.open(fileobj=buf) as tar:
            members = {m.name: m for m in tar.getmembers()}
            assert tar.extractfile(members["opt/doc"]).read() == b"here"
            assert tar.extractfile(members["opt/lib/a.py"]).read() == b"a"
        assert all((m.uid, m.gid) == owner for m in members.values())
        if mode is not None:
            assert all(m.mode == mode for m in members.values())
        assert members["opt/lib/sub"].isdir()


def test_add_extracts_local_archives(ctx_dir: Path) -> None:
    with tarfile.open(ctx_dir / "bundle.tar.gz", "w:gz") as tar:
        tar.add(ctx_dir / "lib", arcname="pkg")
    entries = BuildContext(ctx_dir).entries(["bundle.tar.gz"], "/srv/", dest_is_dir=_never_dir,
                                            extract_archives=True)
    assert entries[0].extract and entries[0].dest == "/srv"
    buf = io.BytesIO()
    write_tar(entries, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        assert "srv/pkg/sub/c.txt" in tar.getnames()


def test_add_refuses_archive_members_that_escape(ctx_dir: Path) -> None:
    with tarfile.open(ctx_dir / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("../../etc/evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    entries = BuildContext(ctx_dir).entries(["evil.tar"], "/srv/", dest_is_dir=_never_dir,
                                            extract_archives=True)
    with pytest.raises(BuildError, match="escapes its root"):
        write_tar(entries, io.BytesIO())


def _tar(members: dict[str, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_entries_from_another_image_tar() -> None:
    data = _tar({"out": None, "out/bin": None, "out/bin/app": b"elf"})
    entries = entries_from_tar(data, "/build/out", "/usr/local", into=False,
                               dest_is_dir=_never_dir)
    assert [(e.dest, e.kind) for e in entries] == [("/usr/local/bin", "dir"),
                                                   ("/usr/local/bin/app", "file")]
    single = entries_from_tar(_tar({"app": b"elf"}), "/build/app", "/usr/bin/", into=True,
                              dest_is_dir=_never_dir)
    assert single[0].dest == "/usr/bin/app" and single[0].data == b"elf"


def test_copy_step_destination_rules() -> None:
    def plan(dest: str, workdir: str = "/work") -> str:
        return CopyStep.plan(cmd="COPY", sources=["a"], dest=dest, workdir=workdir, flags={},
                             add=False, heredocs={}).dest
    assert plan("rel") == "/work/rel"
    assert plan("rel/") == "/work/rel/"
    assert plan(".") == "/work/"
    assert plan("/abs/../x") == "/x"
    assert plan("/") == "/"
    with pytest.raises(BuildError, match="--chmod"):
        CopyStep.plan(cmd="COPY", sources=["a"], dest="/x", workdir="/", flags={"chmod": "9z"},
                      add=False, heredocs={})


def test_step_key_depends_on_every_input() -> None:
    base = step_key("parent", "RUN x", {"A": "1"}, "sum")
    assert base == step_key("parent", "RUN x", {"A": "1"}, "sum")
    assert len({base, step_key("other", "RUN x", {"A": "1"}, "sum"),
                step_key("parent", "RUN y", {"A": "1"}, "sum"),
                step_key("parent", "RUN x", {"A": "2"}, "sum"),
                step_key("parent", "RUN x", {"A": "1"}, "other")}) == 5


def test_build_cache_entries_are_shared_and_forgettable(tmp_path: Path) -> None:
    one, two = BuildCache(tmp_path), BuildCache(tmp_path)
    key = step_key("", "FROM scratch")
    assert one.get(key) is None
    one.put(key, "sha256:abc")
    assert two.get(key) == "sha256:abc"
    two.forget(key)
    assert one.get(key) is None
    assert not [p for p in (tmp_path / "keys").rglob(".tmp-*")]


def test_glob_walks_only_what_the_pattern_can_reach(ctx_dir: Path) -> None:
    ctx = BuildContext(ctx_dir)
    assert ctx.glob("lib/*.py") == ["lib/a.py", "lib/b.py"]
    assert ctx.glob("*/sub/*.txt") == ["lib/sub/c.txt"]
    assert ctx.glob("*.py") == ["app.py"]
    assert ctx.glob("**/*.txt") == ["lib/sub/c.txt"]
    assert ctx.glob("missing/*") == []
