"""`isobox bootstrap debian:bookworm`: debootstrap from the machine's apt mirror, no registry.

Slow (debootstrap downloads about 40 MB from the mirror the machine's apt sources name) and
needs that mirror: skipped when debootstrap is missing or apt has no Debian source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec
from pytest_isobox.images.bootstrap import apt_sources, mirror_for
from pytest_isobox.native.engine import NativeEngine
from tests.conftest import needs_root

SUITE = "bookworm"
INCLUDE = ["netbase"]  # not in minbase: /etc/protocols shows --include took effect


def test_apt_sources_one_line_and_deb822(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian trixie main\n"
        "deb-src http://src.example/debian trixie main\n")
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: http://other.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://sec.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    found = apt_sources(tmp_path / "sources.list", parts)
    assert found == [("http://mirror.example/debian", ["trixie"]),
                     ("http://other.example/debian", ["bookworm", "bookworm-updates"]),
                     ("http://sec.example/debian-security", ["bookworm-security"])]
    assert mirror_for("bookworm", found) == "http://other.example/debian"
    assert mirror_for("trixie", found) == "http://mirror.example/debian"
    assert mirror_for("sid", found) == "http://mirror.example/debian"


needs_debootstrap = pytest.mark.skipif(shutil.which("debootstrap") is None,
                                       reason="debootstrap is not installed")


@pytest.fixture(scope="module")
def boot_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A store with debian:bookworm (--variant minbase --include netbase) bootstrapped once by
    the CLI; a debootstrap wrapper on PATH logs each run (then execs the real one). Yields
    (home, log of runs)."""
    try:
        mirror_for(SUITE)
    except Exception as exc:  # noqa: BLE001 - no Debian source on this machine
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("bootstrap")
    bindir, runs = root / "bin", root / "runs.log"
    bindir.mkdir()
    wrapper = bindir / "debootstrap"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> {runs}\nexec {shutil.which('debootstrap')}"
                       ' "$@"\n')
    wrapper.chmod(0o755)
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{bindir}:{old_path}"
    try:
        home = root / "home"
        done = subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "--home", str(home),
                               "bootstrap", "--variant", "minbase", "--include",
                               ",".join(INCLUDE), f"debian:{SUITE}"],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        yield home, runs
    finally:
        os.environ["PATH"] = old_path


@needs_root
@needs_debootstrap
@pytest.mark.slow
def test_bootstrapped_debian_runs_and_is_cached(boot_home: tuple[Path, Path]) -> None:
    home, runs = boot_home
    engine = NativeEngine(home=home)
    try:
        script = "cat /etc/os-release; id _apt; grep -c tcp /etc/protocols"
        state = engine.run(ContainerSpec(image=f"debian:{SUITE}", command=["sh", "-c", script]))
        assert engine.wait(state.id, timeout=60) == 0
        out = b"".join(c for _, c in engine.logs(state.id)).decode()
        engine.remove(state.id, force=True)
        assert f'VERSION_CODENAME={SUITE}' in out and "_apt" in out
        assert out.splitlines()[-1] != "0"  # netbase's /etc/protocols: --include installed it
        first = engine.images_store.resolve(f"debian:{SUITE}").id
        assert engine.bootstrap(f"debian:{SUITE}", include=INCLUDE) == first  # cached
        assert len(runs.read_text().splitlines()) == 1
        assert engine.images_store.resolve(f"debian:{SUITE}").config["config"]["Cmd"] == ["bash"]
    finally:
        engine.close()


@needs_root
@needs_debootstrap
@pytest.mark.slow
def test_apt_get_install_in_a_build_from_the_bootstrapped_base(boot_home: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    """apt's sandbox user and outbound network work in RUN (the mirror is the machine's)."""
    home, _ = boot_home
    engine = NativeEngine(home=home)
    try:
        context = tmp_path / "ctx"
        context.mkdir()
        (context / "Dockerfile").write_text(
            f"FROM debian:{SUITE}\n"
            "RUN apt-get update -q && apt-get install -y -q --no-install-recommends hello\n"
            'CMD ["hello"]\n')
        image = engine.build(context, tag="with-hello:1")
        state = engine.run(ContainerSpec(image=image))
        assert engine.wait(state.id, timeout=60) == 0
        assert b"Hello, world!" in b"".join(c for _, c in engine.logs(state.id))
        engine.remove(state.id, force=True)
    finally:
        engine.close()



@needs_root
@needs_debootstrap
@pytest.mark.slow
def test_the_plugins_bootstrap_image_is_the_cached_one(boot_home: tuple[Path, Path],
                                                       pytester: pytest.Pytester) -> None:
    """`image(bootstrap="debian:bookworm", include=[...])` in a conftest: the same inputs find
    the image made above (debootstrap does not run again), a container of it runs."""
    home, runs = boot_home
    before = runs.read_text()
    pytester.makeconftest(f"""
        from pytest_isobox import container, image
        base = image(bootstrap="debian:{SUITE}", include={INCLUDE!r})
        box = container(image="{{base}}", command=["sleep", "60"], ready=False)
    """)
    pytester.makepyfile("""
        def test_debian(box):
            out = box.exec(["sh", "-c", ". /etc/os-release; echo $VERSION_CODENAME"])
            assert (out.exit_code, out.output) == (0, "{SUITE}\\n")
    """.replace("{SUITE}", SUITE))
    result = pytester.runpytest("-p", "no:cacheprovider", f"--isobox-home={home}")
    result.assert_outcomes(passed=1)
    assert runs.read_text() == before
