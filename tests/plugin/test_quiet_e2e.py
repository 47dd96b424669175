"""A run that uses no isobox fixture is untouched: no handler, no engine import, no header."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_isobox.plugin.settings import OPTIONS
from tests.plugin.conftest import base_conftest

HEAVY = ("pytest_isobox.native", "pytest_isobox.docker", "pytest_isobox.images",
         "pytest_isobox.builder", "pytest_isobox.plugin.session", "pyroute2",
         "pytest_isobox.plugin.handles", "pytest_isobox.plugin.imperative",
         "pytest_isobox.plugin.sharing", "pytest_isobox.plugin.compose_fixture",
         "pytest_isobox.compose", "pytest_isobox.reaper", "pytest_isobox.locks",
         "pytest_isobox.processes", "pytest_isobox.server")
# all the plugin may import while no conftest or test names anything of isobox: its hooks and
# options, and the seam's registry (the engine's name is checked at configure, by name only)
PLUGIN_ALONE = ["pytest_isobox", "pytest_isobox.engine", "pytest_isobox.engine.errors",
                "pytest_isobox.engine.registry", "pytest_isobox.homes", "pytest_isobox.plugin",
                "pytest_isobox.plugin.activation", "pytest_isobox.plugin.hookspecs",
                "pytest_isobox.plugin.settings"]

CHECKS = f"""
import signal
import sys

HEAVY = {HEAVY!r}


def heavy_modules():
    return sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in HEAVY))


def isobox_modules():
    return sorted(m for m in sys.modules if m.split('.')[0] == 'pytest_isobox')


def sigterm_is_default():
    return signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
"""


@pytest.fixture
def no_isobox_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ISOBOX_* option in the environment; the store found through XDG_CACHE_HOME."""
    for opt in OPTIONS:
        monkeypatch.delenv(opt.env, raising=False)
    shim_dir = os.environ.get("ISOBOX_SHIM_DIR") or str(Path.home() / ".cache" / "isobox-shim")
    monkeypatch.setenv("ISOBOX_SHIM_DIR", shim_dir)  # the compiled shim, not built again
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_plain_run_installs_and_imports_nothing(pytester, busybox_rootfs, no_isobox_settings):
    pytester.makeconftest(base_conftest(busybox_rootfs, """
        box = container(image="{base}", command="sleep 300", init=True)
        net = network()
    """))
    pytester.makepyfile(checks=CHECKS, test_plain="""
        from checks import heavy_modules, sigterm_is_default

        def test_plain(request):
            assert request.config.pluginmanager.hasplugin("isobox")
            assert sigterm_is_default()
            assert heavy_modules() == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    assert not [line for line in result.outlines if line.startswith("isobox")]


def test_the_plugin_alone_imports_only_its_hooks_and_options(pytester, no_isobox_settings):
    """No conftest, no fixture: not even the engine seam or the fixture factories load."""
    pytester.makepyfile(checks=CHECKS, test_plain=f"""
        from checks import isobox_modules

        def test_plain(request):
            assert request.config.pluginmanager.hasplugin("isobox")
            assert isobox_modules() == {PLUGIN_ALONE!r}
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=1)


def test_an_option_given_shows_the_header_only(pytester, no_isobox_settings):
    pytester.makepyfile(checks=CHECKS, test_plain="""
        from checks import heavy_modules, sigterm_is_default

        def test_plain():
            assert sigterm_is_default() and heavy_modules() == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--isobox-keep=failed")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["isobox: engine native, keep failed, home *"])


@pytest.mark.parametrize("engine_kind", ["native"])
def test_a_used_fixture_wakes_the_plugin(pytester, busybox_rootfs, no_isobox_settings,
                                         engine_kind, tmp_path):
    from tests.plugin.conftest import engine_problem

    if engine_problem(engine_kind):
        pytest.skip(engine_problem(engine_kind))
    pytester.makeconftest(base_conftest(busybox_rootfs, """
        box = container(image="{base}", command="sleep 300", init=True)
    """))
    pytester.makepyfile(checks=CHECKS, test_used="""
        from checks import heavy_modules, sigterm_is_default

        def test_plain():
            assert sigterm_is_default()

        def test_box(box):
            assert box.exec("echo hi").output.strip() == "hi"
            assert not sigterm_is_default(), "SIGTERM tears the containers down"
            assert "pytest_isobox.native.engine" in heavy_modules()
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=2)
    # the header comes after collection, since only then is it known that isobox is used
    home = tmp_path / "cache" / "isobox"
    result.stdout.fnmatch_lines(["collected 2 items", f"isobox: engine native, keep never, home {home}"])
    result.stdout.fnmatch_lines(["*= isobox =*", "containers:", "  box *"])
