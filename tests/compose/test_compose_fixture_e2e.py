"""`compose()` in a real pytest run, on each engine: the two-service project of data/ built
and started (web healthy before client starts), ports reachable from the test, service names
and aliases resolving between services, the named volume shared, nothing left afterwards; a
broken file fails the test with one line naming file and key."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from pytest_isobox.engine import open_engine
from tests.plugin.conftest import engine_problem

DATA = Path(__file__).parent / "data"
TAG = "isobox-test/compose-busybox:latest"
PROJECT_LABEL = "com.docker.compose.project"


@pytest.fixture(params=("native", "docker"))
def engine_kind(request: pytest.FixtureRequest, isobox_home: Path) -> str:
    problem = engine_problem(request.param)
    if problem:
        pytest.skip(problem)
    return request.param


def _conftest(rootfs: Path, compose_args: str) -> str:
    return textwrap.dedent(f"""
        import os
        import pytest
        from pytest_isobox import compose, image

        os.environ["BASE"] = {TAG!r}
        base = image(rootfs={str(rootfs)!r}, tag={TAG!r})
        _stack = compose({compose_args})

        @pytest.fixture(scope="session")
        def stack(base, _stack):  # base first: the compose file builds FROM it
            return _stack
    """)


def _leftovers(kind: str) -> list[str]:
    engine = open_engine(kind)
    try:
        found = [f"container {c.name}" for c in engine.containers(all=True)
                 if c.labels.get(PROJECT_LABEL, "").startswith("isobox")]
        found += [f"network {n.name}" for n in engine.networks()
                  if n.labels.get(PROJECT_LABEL, "").startswith("isobox")]
        found += [f"volume {v}" for v in engine.volumes() if "_stack" in v]
        found += [f"image {t}" for i in engine.images() for t in i.tags if "-stack-" in t]
        return found
    finally:
        engine.close()


def test_stack_services_ports_names_volume(pytester: pytest.Pytester, busybox_rootfs: Path,
                                           engine_kind: str) -> None:
    shutil.copytree(DATA, pytester.path / "project")
    pytester.makeini(f"[pytest]\nisobox_engine = {engine_kind}\n")
    pytester.makeconftest(_conftest(busybox_rootfs, '"project/compose.yaml"'))
    pytester.makepyfile(test_stack=textwrap.dedent("""
        import urllib.request

        def test_web_from_the_host(stack):
            host, port = stack["web"].get_addr("8000/tcp")
            body = urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=10).read()
            assert body == b"<p>compose web</p>\\n"

        def test_names_resolve_between_services(stack):
            for name in ("web", "www"):
                code, out = stack["client"].exec(["wget", "-qO-", f"http://{name}:8000/health"])
                assert (code, out) == (0, "ok\\n"), name

        def test_volume_shared_and_client_started_after_web(stack):
            # client copied web's greeting at its start: web had written it (healthy) before
            code, out = stack["client"].exec(["cat", "/shared/seen"])
            assert (code, out) == (0, "hello\\n")
            host, port = stack["client"].get_addr("9000/tcp")
            assert urllib.request.urlopen(f"http://{host}:{port}/greeting").read() == b"hello\\n"

        def test_logs_and_unknown_service(stack):
            assert sorted(stack) == ["client", "web"]
            try:
                stack["nope"]
            except KeyError as exc:
                assert "services: web, client" in str(exc)
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=600)
    result.assert_outcomes(passed=4)
    assert _leftovers(engine_kind) == []


def test_broken_file_is_one_line(pytester: pytest.Pytester, busybox_rootfs: Path,
                                 engine_kind: str) -> None:
    (pytester.path / "compose.yaml").write_text(
        "services:\n  web:\n    image: x\n    pid: host\n")
    pytester.makeini(f"[pytest]\nisobox_engine = {engine_kind}\n")
    pytester.makeconftest(_conftest(busybox_rootfs, ""))
    pytester.makepyfile(test_broken="def test_it(stack):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(errors=1)
    line = (r"E\s+pytest_isobox.compose.ComposeError: .*/compose.yaml: "
            r"services.web.pid: not supported by isobox compose$")
    result.stdout.re_match_lines([line])
