""".dockerignore rules as moby/patternmatcher applies them, and the context walk."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_isobox.builder.dockerignore import (
    DockerIgnore,
    clean_pattern,
    context_files,
    ignore_file_for,
)
from pytest_isobox.engine import BuildError


@pytest.mark.parametrize(("raw", "cleaned"), [
    ("# comment", None),
    ("   ", None),
    ("  foo  ", "foo"),
    ("/foo/", "foo"),
    ("./a/../b", "b"),
    ("! /x ", "!x"),
    ("a//b/", "a/b"),
])
def test_clean_pattern(raw: str, cleaned: str | None) -> None:
    assert clean_pattern(raw) == cleaned


@pytest.mark.parametrize(("patterns", "path", "excluded"), [
    (["*.pyc"], "a.pyc", True),
    (["*.pyc"], "dir/a.pyc", False),  # * does not cross /
    (["**/*.pyc"], "dir/sub/a.pyc", True),
    (["**/*.pyc"], "a.pyc", True),
    (["dir"], "dir/sub/file", True),  # a matched parent excludes its contents
    (["dir/*"], "dir", False),
    (["dir/**"], "dir/a/b", True),
    (["?.txt"], "a.txt", True),
    (["?.txt"], "ab.txt", False),
    (["[ab].txt"], "b.txt", True),
    (["[^ab].txt"], "b.txt", False),
    (["[a-c].txt"], "c.txt", True),
    (["a.b"], "axb", False),  # dot is literal
    (["*", "!keep.txt"], "keep.txt", False),
    (["*", "!keep.txt"], "drop.txt", True),
    (["*.md", "!README.md", "README.md"], "README.md", True),  # last match wins
    (["docs", "!docs/keep"], "docs/keep", False),
    (["docs", "!docs/keep"], "docs/other", True),
    (["/build"], "build/out", True),
    (["\\*"], "*", True),
    (["\\*"], "a", False),
    (["a(b)+c"], "a(b)+c", True),
])
def test_matches(patterns: list[str], path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).matches(path) is excluded


def test_lone_exclamation_is_an_error() -> None:
    with pytest.raises(BuildError, match="illegal exclusion pattern"):
        DockerIgnore(["!"])


def _tree(root: Path, files: list[str]) -> None:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def test_context_files_walks_sorted_and_skips_excluded(tmp_path: Path) -> None:
    _tree(tmp_path, ["b.txt", "a/x.pyc", "a/y.py", "node_modules/m/index.js", "z/keep", "z/drop"])
    files = context_files(tmp_path, ["**/*.pyc", "node_modules", "z", "!z/keep"])
    assert files == ["a", "a/y.py", "b.txt", "z", "z/keep"]


def test_exception_with_globstar_below_an_excluded_directory(tmp_path: Path) -> None:
    _tree(tmp_path, ["node_modules/m/keep.me", "node_modules/m/index.js"])
    assert context_files(tmp_path, ["node_modules", "!node_modules/**/keep.me"]) == \
        ["node_modules", "node_modules/m", "node_modules/m/keep.me"]


def test_context_files_under_one_directory(tmp_path: Path) -> None:
    _tree(tmp_path, ["a/x", "a/b/y", "c"])
    assert context_files(tmp_path, [], under="a") == ["a/b", "a/b/y", "a/x"]


def test_symlinks_are_listed_not_followed(tmp_path: Path) -> None:
    _tree(tmp_path, ["real/f"])
    (tmp_path / "link").symlink_to("real")
    assert context_files(tmp_path, []) == ["link", "real", "real/f"]


def test_from_file_and_dockerfile_specific_ignore(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("# comment\n*.log\n")
    assert DockerIgnore.from_file(tmp_path / ".dockerignore").matches("x.log")
    assert not DockerIgnore.from_file(tmp_path / "missing")
    dockerfile = tmp_path / "web.Dockerfile"
    assert ignore_file_for(tmp_path, dockerfile) == str(tmp_path / ".dockerignore")
    assert ignore_file_for(f"{tmp_path}//./", None) == str(tmp_path / ".dockerignore")
    (tmp_path / "web.Dockerfile.dockerignore").write_text("*.tmp\n")
    assert ignore_file_for(tmp_path, dockerfile) == str(tmp_path / "web.Dockerfile.dockerignore")
