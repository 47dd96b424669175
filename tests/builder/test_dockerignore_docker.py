""".dockerignore matching checked against a real Docker daemon: the files `COPY . /ctx/` puts in
an image built by `docker build` must be exactly those `context_files` selects."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from pytest_isobox.builder.dockerignore import DockerIgnore, context_files
from tests.conftest import needs_docker

pytestmark = [needs_docker, pytest.mark.docker]

TREE = ["README.md", "main.py", "main.pyc", "notes.txt", "secret.key", "docs/index.md",
        "docs/build/out.html", "docs/keep/KEEP.md", "src/app/a.py", "src/app/a.pyc",
        "src/app/__pycache__/a.cpython.pyc", "src/vendor/lib.py", "node_modules/m/index.js",
        "node_modules/m/keep.me", "tmp/x", "a[1].txt", "weird name.txt", "deep/er/est/file.go"]

CASES = {
    "globs": ["*.pyc", "**/*.pyc", "**/__pycache__", "secret.*"],
    # An exception with `**` below an excluded directory (`!node_modules/**/keep.me`) is
    # left out: Docker 20.10's classic CLI prunes such directories by literal prefix and drops
    # the file, BuildKit keeps it; we follow BuildKit (see test_dockerignore.py).
    "exceptions": ["docs", "!docs/keep", "node_modules", "!node_modules/m/keep.me"],
    "everything-but": ["*", "!src", "!README.md", "src/vendor"],
    "anchors-and-cleaning": ["/tmp/", "./deep/er/../er/est", "  notes.txt  ", "# comment"],
    "classes": ["a[0-9].txt", "weird?name.txt", "[!m]ain.py"],
}


def _docker(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["docker", *args], input=data, check=True, capture_output=True).stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_context_matches_docker_build(case: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    for name in TREE:
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    (ctx / ".dockerignore").write_text("\n".join(CASES[case]) + "\n")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx/\n")
    env_build = subprocess.run(["docker", "build", "-q", str(ctx)], check=True,
                               capture_output=True, text=True,
                               env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin"})
    image = env_build.stdout.strip()
    container = _docker("create", image, "none").decode().strip()
    try:
        exported = _docker("export", container)
    finally:
        _docker("rm", "-f", container)
        _docker("rmi", "-f", image)
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        docker_files = {m.name.removeprefix("ctx/") for m in tar.getmembers()
                        if m.name.startswith("ctx/") and not m.isdir()}
    ours = {p for p in context_files(ctx, DockerIgnore.from_file(ctx / ".dockerignore"))
            if not (ctx / p).is_dir()}
    assert ours == docker_files
