"""The light path of a fully cached build (native/buildfront.py): as strict as the full build
(every change that rebuilds a step makes it fall back, never hand out a stale id), and what it
answers is what the full build answers (the id, the tag, the image inspected)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_isobox.native.buildfront import NativeBuildFront
from pytest_isobox.native.engine import NativeEngine
from tests.builder.conftest import BASE
from tests.conftest import needs_root

pytestmark = needs_root

DOCKERFILE = f"""\
FROM {BASE}
ARG FLAVOUR=plain
COPY . /app/
RUN echo "$FLAVOUR" > /flavour
ENV DONE=1
"""


@pytest.fixture
def context(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "data.txt").write_text("one\n")
    (root / "ignored.txt").write_text("not sent\n")
    (root / ".dockerignore").write_text("ignored.txt\n")
    return root


def _front_build(home: Path, context: Path, **kwargs: object) -> tuple[str, bool]:
    """(the id a build front gives, whether it answered without opening the engine)."""
    front = NativeBuildFront(home=home)
    try:
        image_id = front.build(context, **kwargs)  # type: ignore[arg-type]
        return image_id, front._engine is None
    finally:
        front.close()


def _changed_then_cached(engine: NativeEngine, home: Path, context: Path, stale: str,
                         **kwargs: object) -> str:
    """After a change: the front falls back (a new id, the engine's), the next build is
    answered lightly with that same id, and the engine's own build agrees."""
    rebuilt, light = _front_build(home, context, tag="app", **kwargs)
    assert not light, "a changed input must not be answered from the cache"
    assert rebuilt != stale
    again, light = _front_build(home, context, tag="app", **kwargs)
    assert (again, light) == (rebuilt, True)
    assert engine.build(context, tag="app", **kwargs) == rebuilt  # type: ignore[arg-type]
    return rebuilt


def test_unchanged_is_answered_without_the_engine(engine: NativeEngine, isobox_home: Path,
                                                  context: Path) -> None:
    first = engine.build(context, tag="app")
    assert _front_build(isobox_home, context, tag="app") == (first, True)
    assert _front_build(isobox_home, context) == (first, True)  # no tag to check


def test_a_changed_context_file_rebuilds(engine: NativeEngine, isobox_home: Path,
                                         context: Path) -> None:
    stale = engine.build(context, tag="app")
    (context / "data.txt").write_text("two\n")
    _changed_then_cached(engine, isobox_home, context, stale)
    (context / "new.txt").write_text("a new file in a copied directory\n")
    newer = _changed_then_cached(engine, isobox_home, context, stale)
    (context / "ignored.txt").write_text("still not sent\n")  # excluded: no rebuild
    assert _front_build(isobox_home, context, tag="app") == (newer, True)


def test_a_changed_build_arg_rebuilds_and_the_old_one_is_still_cached(
        engine: NativeEngine, isobox_home: Path, context: Path) -> None:
    plain = engine.build(context, tag="app")
    spicy = _changed_then_cached(engine, isobox_home, context, plain,
                                 buildargs={"FLAVOUR": "spicy"})
    assert _front_build(isobox_home, context, tag="app",
                        buildargs={"FLAVOUR": "plain"})[1] is False  # the tag moves back
    assert _front_build(isobox_home, context, tag="app") == (plain, True)
    assert spicy != plain


def test_a_moved_base_image_tag_rebuilds(engine: NativeEngine, isobox_home: Path,
                                         context: Path, busybox_rootfs: Path,
                                         tmp_path: Path) -> None:
    stale = engine.build(context, tag="app")
    other = tmp_path / "rootfs2"
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(other)], check=True)
    (other / "marker").write_text("another base\n")
    engine.import_rootfs(other, BASE)
    _changed_then_cached(engine, isobox_home, context, stale)


def test_a_changed_dockerignore_rebuilds(engine: NativeEngine, isobox_home: Path,
                                         context: Path) -> None:
    stale = engine.build(context, tag="app")
    (context / ".dockerignore").write_text("# nothing ignored now\n")
    _changed_then_cached(engine, isobox_home, context, stale)


def test_a_changed_dockerfile_line_rebuilds(engine: NativeEngine, isobox_home: Path,
                                            context: Path) -> None:
    stale = engine.build(context, tag="app")
    (context / "Dockerfile").write_text(DOCKERFILE.replace("ENV DONE=1", "ENV DONE=2"))
    _changed_then_cached(engine, isobox_home, context, stale)
    (context / "Dockerfile").write_text(DOCKERFILE.replace('"$FLAVOUR"', '"$FLAVOUR!"'))
    _changed_then_cached(engine, isobox_home, context, stale)


def test_a_removed_step_image_or_a_new_tag_falls_back(engine: NativeEngine, isobox_home: Path,
                                                      context: Path) -> None:
    first = engine.build(context, tag="app")
    assert _front_build(isobox_home, context, tag="other")[1] is False  # a tag to set
    assert engine.image_inspect("other").id == first
    engine.remove_image("app")
    engine.remove_image("other")  # the final image is gone: its cache entry is stale
    rebuilt, light = _front_build(isobox_home, context, tag="app")
    assert not light
    assert engine.image_inspect("app").id == rebuilt


def test_no_cache_label_and_pull_always_take_the_full_path(engine: NativeEngine,
                                                           isobox_home: Path,
                                                           context: Path) -> None:
    first = engine.build(context, tag="app")
    assert _front_build(isobox_home, context, labels={"a": "b"})[1] is False
    assert _front_build(isobox_home, context, no_cache=True)[0] != first
    front = NativeBuildFront(home=isobox_home, pull="always")
    try:
        assert front._engine is not None  # the policy to apply is the engine's
    finally:
        front.close()


# ---------------------------------------------------------------------- as a user runs it


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_isobox.cli", *args], check=False,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _full_path_env() -> dict[str, str]:
    """The pull policy "always" (offline: nothing pulled) keeps the front off its light path."""
    return {"ISOBOX_PULL": "always", "ISOBOX_OFFLINE": "1"}


def test_cli_output_equals_the_full_path_s(engine: NativeEngine, isobox_home: Path,
                                           context: Path) -> None:
    full = _cli("build", "-q", "-t", "app", str(context), env=_full_path_env())
    assert full.returncode == 0, full.stderr
    inspected = _cli("image", "inspect", "app").stdout
    light = _cli("build", "-q", "-t", "app", str(context))
    assert light.returncode == 0, light.stderr
    assert (light.stdout, light.stderr) == (full.stdout, full.stderr)
    assert _cli("image", "inspect", "app").stdout == inspected
    assert json.loads(inspected)[0]["Id"] == full.stdout.strip()

    def steps(out: str) -> list[str]:  # the step lines, without their timings
        return [line.split(" (")[0] for line in out.splitlines()]
    verbose_full = _cli("build", "-t", "app", str(context), env=_full_path_env())
    verbose_light = _cli("build", "-t", "app", str(context))
    assert verbose_light.returncode == 0, verbose_light.stderr
    assert steps(verbose_light.stdout) == steps(verbose_full.stdout)
    assert "Using cache" in verbose_light.stdout


def test_cli_cached_build_loads_no_engine(engine: NativeEngine, isobox_home: Path,
                                          context: Path) -> None:
    """What the light path never loads: the engine (its open sweeps), the image store (its
    constructor sweeps temps), the reaper, the heavy standard modules, and what a cached
    build goes without (issue 14): the argument parser, pathlib (with urllib.parse and
    ipaddress), importlib, contextlib, the reference grammar (a regex)."""
    for path in context.iterdir():  # older than the stat cache's racy second: remembered
        os.utime(path, (1_600_000_000, 1_600_000_000))
    image = engine.build(context, tag="app")
    never = ("pytest_isobox.native.engine", "pytest_isobox.images.store", "pytest_isobox.reaper",
             "pytest_isobox.native.sweep", "pytest_isobox.engine.specs", "pytest_isobox.locks",
             "dataclasses", "tarfile", "logging", "argparse", "tempfile", "typing", "hashlib",
             "pytest_isobox.cli.arguments", "pathlib", "urllib.parse", "ipaddress", "importlib",
             "contextlib", "pytest_isobox.images.reference")
    probe = textwrap.dedent(f"""
        import sys
        at_start = set(sys.modules)
        from pytest_isobox.cli import main
        code = main(["build", "-q", "-t", "app", {str(context)!r}])
        print("LOADED", sorted(m for m in set(sys.modules) - at_start
                               if m in {never!r} or m.startswith({never!r}[0] + ".")))
        sys.exit(code)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [image, "LOADED []"]


def test_concurrent_cli_builds_agree(engine: NativeEngine, isobox_home: Path,
                                     context: Path) -> None:
    """Light and full builds of one context at once (one of them first changing nothing):
    every process prints the same id and the tag ends on it."""
    image = engine.build(context, tag="app")
    argv = [sys.executable, "-m", "pytest_isobox.cli", "build", "-q", "-t", "app", str(context)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **(_full_path_env() if i % 2 else {})})
             for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    assert {out.strip() for out, _ in outs} == {image}
    assert engine.image_inspect("app").id == image
