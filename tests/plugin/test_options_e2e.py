"""Options from the command line, the ini file and ISOBOX_*; skips; keep; reuse."""

from __future__ import annotations

import re

import pytest

from pytest_isobox.plugin.session import engine_choice
from pytest_isobox.plugin.settings import OPTIONS, Settings
from tests.plugin.conftest import base_conftest, gone, remove_quietly

CONFTEST_NO_ENGINE = """
from pytest_isobox import container, image

base = image(rootfs="/nonexistent", tag="x")
box = container(image="{base}")
"""


def test_unavailable_engine_skips_with_one_line_reason(pytester, isobox_home):
    pytester.makeconftest(CONFTEST_NO_ENGINE)
    pytester.makepyfile("""
        def test_needs(box):
            pass
        def test_plain():
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "--isobox-engine=docker",
                                "--isobox-docker-url=unix:///nonexistent/docker.sock")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] *: isobox: docker engine: *nonexistent*"])
    result.stdout.fnmatch_lines(["*engine unavailable, container tests skipped: docker engine:*"])
    skip_line = next(ln for ln in result.outlines if ln.startswith("SKIPPED"))
    assert "\n" not in skip_line


def test_environment_chooses_the_engine(pytester, isobox_home, monkeypatch):
    pytester.makeconftest(CONFTEST_NO_ENGINE)
    pytester.makepyfile("def test_needs(box):\n    pass\n")
    monkeypatch.setenv("ISOBOX_ENGINE", "docker")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["isobox: engine docker, keep never, home *",
                                 "SKIPPED * isobox: docker engine: *"])


def test_command_line_beats_environment_beats_ini(pytester, isobox_home, monkeypatch):
    pytester.makeini("[pytest]\nisobox_keep = always\nisobox_engine = docker\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    assert "keep always" in pytester.runpytest("-p", "no:cacheprovider").stdout.str()
    monkeypatch.setenv("ISOBOX_KEEP", "failed")
    assert "keep failed" in pytester.runpytest("-p", "no:cacheprovider").stdout.str()
    out = pytester.runpytest("-p", "no:cacheprovider", "--isobox-keep=never").stdout.str()
    assert "engine docker, keep never" in out


@pytest.mark.parametrize(("env", "message"), [
    ({"ISOBOX_KEEP": "sometimes"},
     "environment variable ISOBOX_KEEP: 'sometimes' is not one of never, failed, always"),
    ({"ISOBOX_REUSE": "maybe"}, "environment variable ISOBOX_REUSE: 'maybe' is not a boolean"),
    ({"ISOBOX_TIMEOUT": "-3"}, "ISOBOX_TIMEOUT: '-3' is not a positive number of seconds"),
])
def test_bad_values_are_one_clear_usage_error(pytester, monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: *{message}*"])


def test_rootless_and_limits_reach_the_native_engine(pytester, monkeypatch):
    pytester.makeini("[pytest]\nisobox_limits = best-effort\n")
    monkeypatch.setenv("ISOBOX_ROOTLESS", "1")
    config = pytester.parseconfigure("-p", "no:cacheprovider")
    kind, options = engine_choice(Settings.from_config(config))
    assert (kind, options["rootless"], options["limits"]) == ("native", True, "best-effort")
    monkeypatch.delenv("ISOBOX_ROOTLESS")
    kind, options = engine_choice(Settings.from_config(pytester.parseconfigure()))
    assert options["rootless"] is None  # the engine decides: rootful as root


def test_bad_factory_argument_names_the_value(pytester):
    pytester.makeconftest("""
        from pytest_isobox import container
        box = container(image="x", scope="forever")
    """)
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    assert ("InvalidSpec: container(scope='forever'): expected one of function, class, module, "
            "package, session") in result.stdout.str() + result.stderr.str()


def test_keep_failed_keeps_and_says_how_to_exec(project, busybox_rootfs, engine, engine_kind):
    project.makeconftest(base_conftest(busybox_rootfs, """
        box = container(image="{base}", command="sleep 300", init=True, scope="function")
    """))
    project.makepyfile("""
        def test_ok(box):
            pass
        def test_bad(box):
            assert False
    """)
    result = project.runpytest("-p", "no:cacheprovider", "--isobox-keep=failed")
    result.assert_outcomes(passed=1, failed=1)
    tool = "docker" if engine_kind == "docker" else "isobox"
    result.stdout.fnmatch_lines(["kept containers (remove with `isobox rm -f <id>`):",
                                 f"  box: kept isobox-box-*-master-2: {tool}* exec -it * sh"])
    kept = re.search(r"exec -it (\w+) sh", result.stdout.str()).group(1)
    try:
        assert engine.state(kept).running
        assert len(re.findall(r"exec -it", result.stdout.str())) == 1
    finally:
        remove_quietly(engine, kept)


def test_keep_always_keeps_the_volume_and_names_the_home(project, busybox_rootfs, engine,
                                                         engine_kind, isobox_home):
    project.makeconftest(base_conftest(busybox_rootfs, """
        data = volume()
        box = container(image="{base}", command="sleep 300", init=True, mounts=["{data}:/vol"])
    """))
    project.makepyfile("""
        def test_writes(box):
            assert box.exec("sh -c 'echo kept > /vol/f'").exit_code == 0
    """)
    before = set(engine.volumes())
    result = project.runpytest("-p", "no:cacheprovider", "--isobox-keep=always")
    result.assert_outcomes(passed=1)
    kept = re.search(r"exec -it (\w+) sh", result.stdout.str()).group(1)
    try:
        if engine_kind == "native":  # the hint works from a shell with no ISOBOX_HOME
            result.stdout.fnmatch_lines([f"*isobox --home {isobox_home} exec -it {kept} sh"])
        assert engine.exec(kept, ["cat", "/vol/f"]).stdout == b"kept\n"
    finally:
        remove_quietly(engine, kept)
        for name in set(engine.volumes()) - before:  # only the one this run made
            engine.volume_remove(name, force=True)


def test_reuse_keeps_a_container_until_its_configuration_changes(project, busybox_rootfs,
                                                                 engine, tmp_path):
    def run(value: str) -> str:
        project.makeconftest(base_conftest(busybox_rootfs, f"""
            box = container(image="{{base}}", command="sleep 300", init=True,
                            environment={{"VALUE": "{value}"}})
        """))
        project.makepyfile(f"""
            def test_it(box):
                open({str(tmp_path / "id")!r}, "w").write(box.id)
                assert box.exec("sh -c 'echo $VALUE'").output == "{value}\\n"
        """)
        project.runpytest("-p", "no:cacheprovider", "--isobox-reuse").assert_outcomes(passed=1)
        return (tmp_path / "id").read_text()

    first = run("one")
    try:
        assert run("one") == first
        changed = run("two")
        assert changed != first and gone(engine, first)
    finally:
        remove_quietly(engine, first)
        remove_quietly(engine, (tmp_path / "id").read_text())


BOOLEANS = [opt for opt in OPTIONS if opt.kind == "bool"]


def test_every_boolean_option_has_a_negative_flag():
    assert {opt.flag: opt.negative for opt in BOOLEANS} == {
        "--isobox-no-cache": "--isobox-cache", "--isobox-reuse": "--isobox-no-reuse",
        "--isobox-rootless": "--isobox-no-rootless"}


@pytest.mark.parametrize("opt", BOOLEANS, ids=lambda opt: opt.ini)
def test_the_negative_flag_undoes_ini_and_environment(pytester, monkeypatch, opt):
    def value(*args: str) -> object:
        settings = Settings.from_config(pytester.parseconfigure("-p", "no:cacheprovider", *args))
        return getattr(settings, opt.dest.removeprefix("isobox_"))

    pytester.makeini(f"[pytest]\n{opt.ini} = true\n")
    assert value() is True
    assert value(opt.negative) is False
    assert value(opt.negative, opt.flag) is True  # the last flag wins
    pytester.makeini(f"[pytest]\n{opt.ini} = false\n")
    assert value() is False
    assert value(opt.flag) is True
    monkeypatch.setenv(opt.env, "1")
    assert value() is True
    assert value(opt.negative) is False


def test_ini_options_are_typed(pytester):
    pytester.makeini("[pytest]\nisobox_reuse = yes\nisobox_timeout = 2.5\n")
    config = pytester.parseconfigure("-p", "no:cacheprovider")
    assert config.getini("isobox_reuse") is True
    settings = Settings.from_config(config)
    assert (settings.reuse, settings.timeout) == (True, 2.5)


@pytest.mark.skipif(pytest.version_tuple < (9,), reason="[tool.pytest] TOML tables: pytest 9")
def test_native_toml_takes_booleans_and_numbers(pytester):
    pytester.makepyprojecttoml(
        "[tool.pytest]\nisobox_reuse = true\nisobox_no_cache = false\nisobox_timeout = 7.5\n"
        'isobox_keep = "failed"\n')
    settings = Settings.from_config(pytester.parseconfigure("-p", "no:cacheprovider"))
    assert (settings.reuse, settings.no_cache, settings.timeout, settings.keep) == (
        True, False, 7.5, "failed")


def test_bad_ini_boolean_is_one_usage_error_naming_the_file(pytester):
    ini = pytester.makeini("[pytest]\nisobox_reuse = maybe\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: ini option isobox_reuse in {ini}: *'maybe'*"])


def test_ini_home_is_relative_to_the_ini_file(pytester, monkeypatch):
    pytester.makeini("[pytest]\nisobox_home = store\n")
    monkeypatch.chdir(pytester.mkdir("sub"))
    config = pytester.parseconfigure("-p", "no:cacheprovider", str(pytester.path))
    assert Settings.from_config(config).home == pytester.path / "store"


def test_markers_are_registered_and_set_on_container_tests(pytester, isobox_home):
    pytester.makeconftest(CONFTEST_NO_ENGINE)
    pytester.makepyfile("""
        import pytest

        def test_needs(box):
            pass

        def test_plain():
            pass

        @pytest.mark.isobox
        def test_marked_by_hand():
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers",
                                "-m", "not isobox", "-W", "error::pytest.PytestUnknownMarkWarning")
    result.assert_outcomes(passed=1, deselected=2)
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers", "-m", "isobox",
                                "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*::test_needs", "*::test_marked_by_hand", "2/3 tests *"])
    result = pytester.runpytest("-p", "no:cacheprovider", "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.isobox: the test uses isobox containers *"])


CONFTEST_OWN_ENGINE = """
from pytest_isobox import container
from pytest_isobox.engine.registry import register
from pytest_isobox.native.engine import NativeEngine

register("mine", NativeEngine)  # a third party's engine, found by name like the built-ins
box = container(image="{rootfs}", command=["sleep", "30"])
"""


def test_an_engine_registered_by_name_is_chosen_by_the_option(pytester, isobox_home,
                                                               busybox_rootfs):
    pytester.makeconftest(CONFTEST_OWN_ENGINE.format(rootfs=busybox_rootfs))
    pytester.makepyfile("""
        def test_runs(box, isobox_engine):
            assert type(isobox_engine).__name__ == "NativeEngine"
            assert box.exec(["echo", "hi"]).output.strip() == "hi"
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--isobox-engine=mine")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["isobox: engine mine, *"])


def test_an_unknown_engine_is_one_line_naming_the_known_ones(pytester, isobox_home):
    pytester.makeconftest(CONFTEST_NO_ENGINE)
    pytester.makepyfile("def test_needs(box):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--isobox-engine=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: isobox_engine: unknown engine 'nope': expected one of docker, *native"])
