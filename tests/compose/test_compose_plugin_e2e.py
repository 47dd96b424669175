"""`compose()` as `container()` is in a real pytest run, on each engine: a failing test shows
its services' logs, --isobox-keep=failed keeps the stack, function scope gives each test a
stack of its own, `shared=True` gives all xdist workers one (`-n 2`), --isobox-reuse adopts an
unchanged project in the next run and replaces a changed one; the readiness wait is the
service's State.Health, an unhealthy service fails the setup with its last probe and logs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_isobox.engine import open_engine
from tests.compose.test_compose_fixture_e2e import PROJECT_LABEL, TAG, _leftovers, engine_kind

__all__ = ["engine_kind"]

WEB = """
services:
  web:
    image: ${BASE}
    command: [sh, -c, "echo web-says-$${WORD:-hello}; exec httpd -f -p 8000 -h /etc"]
    environment: {WORD: "${WORD:-hello}"}
    ports: ["8000"]
    healthcheck:
      test: [CMD, wget, -qO-, "http://127.0.0.1:8000/hostname"]
      interval: 1s
      retries: 30
"""


def _project(pytester: pytest.Pytester, rootfs: Path, kind: str, compose_args: str,
             tests: str, compose_file: str = WEB) -> None:
    (pytester.path / "compose.yaml").write_text(compose_file)
    pytester.makeini(f"[pytest]\nisobox_engine = {kind}\n")
    pytester.makeconftest(textwrap.dedent(f"""
        import os
        import pytest
        from pytest_isobox import compose, image

        os.environ["BASE"] = {TAG!r}
        base = image(rootfs={str(rootfs)!r}, tag={TAG!r})
        _stack = compose({compose_args})

        @pytest.fixture
        def stack(base, _stack):
            return _stack
    """))
    pytester.makepyfile(test_stack=textwrap.dedent(tests))


def _remove_projects(kind: str, prefix: str = "isobox") -> None:
    """What a kept or reused run left on purpose (the test's own cleanup)."""
    engine = open_engine(kind)
    try:
        for state in engine.containers(all=True):
            if state.labels.get(PROJECT_LABEL, "").startswith(prefix):
                engine.remove(state.id, force=True)
        for net in engine.networks():
            if net.labels.get(PROJECT_LABEL, "").startswith(prefix):
                engine.network_remove(net.name)
    finally:
        engine.close()


def _ids(pytester: pytest.Pytester) -> list[list[str]]:
    return [line.split() for line in (pytester.path / "ids").read_text().splitlines()]


RECORD = """
    import os

    def record(stack, test):
        with open(os.path.join(os.path.dirname(__file__), "ids"), "a") as out:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "master")
            out.write(f"{test} {worker} {stack['web'].id} {stack['web'].health()['Status']}\\n")
"""


def test_failing_test_shows_service_logs_and_keep_failed(pytester: pytest.Pytester,
                                                         busybox_rootfs: Path,
                                                         engine_kind: str) -> None:
    _project(pytester, busybox_rootfs, engine_kind, "", """
        def test_fails(stack):
            assert stack["web"].health()["Status"] == "healthy"
            assert False, "on purpose"
    """)
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                               "--isobox-keep=failed", timeout=300)
        result.assert_outcomes(failed=1)
        result.stdout.re_match_lines([r".*isobox container _stack\[web\] \(\S+-web-1\) logs.*",
                                      r"^web-says-hello$"])
        result.stdout.re_match_lines([r"^kept containers.*", r"^  _stack\[web\]: kept \S+-web-1"])
        assert any(c.startswith("container ") for c in _leftovers(engine_kind))
    finally:
        _remove_projects(engine_kind)
    assert _leftovers(engine_kind) == []


def test_function_scope_gives_each_test_its_stack(pytester: pytest.Pytester,
                                                  busybox_rootfs: Path,
                                                  engine_kind: str) -> None:
    _project(pytester, busybox_rootfs, engine_kind, 'scope="function"', RECORD + """
    def test_one(stack):
        record(stack, "one")

    def test_two(stack):
        record(stack, "two")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=2)
    ids = _ids(pytester)
    assert [row[3] for row in ids] == ["healthy", "healthy"]  # waited on State.Health
    assert ids[0][2] != ids[1][2]
    assert _leftovers(engine_kind) == []


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-worker"])
def test_xdist_workers_share_one_stack(pytester: pytest.Pytester, busybox_rootfs: Path,
                                       engine_kind: str, shared: bool) -> None:
    tests = RECORD + "".join(f"""
    def test_{n}(stack):
        record(stack, "{n}")
    """ for n in range(6))
    _project(pytester, busybox_rootfs, engine_kind, f"shared={shared}", tests)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2",
                                           "--dist", "load", "--isobox-keep=never", timeout=600)
    result.assert_outcomes(passed=6)
    ids = _ids(pytester)
    workers = {row[1] for row in ids}
    by_worker = {worker: {row[2] for row in ids if row[1] == worker} for worker in workers}
    assert workers == {"gw0", "gw1"}  # (--dist load gives each worker a share of six)
    assert (by_worker["gw0"] == by_worker["gw1"]) is shared, by_worker
    assert all(len(found) == 1 for found in by_worker.values())
    if shared:
        assert len({row[2] for row in ids}) == 1
    assert _leftovers(engine_kind) == []


def test_reuse_adopts_an_unchanged_project(pytester: pytest.Pytester, busybox_rootfs: Path,
                                           engine_kind: str) -> None:
    _project(pytester, busybox_rootfs, engine_kind, "", RECORD + """
    def test_it(stack):
        record(stack, "it")
    """)
    try:
        runs = []
        for word in ("hello", "hello", "changed"):  # the third run's configuration differs
            pytester.path.joinpath(".env").write_text(f"WORD={word}\n")
            result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--isobox-reuse",
                                                   timeout=300)
            result.assert_outcomes(passed=1)
            runs.append(result)
        first, second, third = (row[2] for row in _ids(pytester))
        assert first == second != third
        runs[0].stdout.re_match_lines([r"^  _stack\[web\] .* reusable$"])
        runs[1].stdout.re_match_lines([r"^  _stack\[web\] .* reused$"])
        runs[2].stdout.re_match_lines([r"^  _stack\[web\] .* reusable$"])
        assert any(c.startswith("container ") for c in _leftovers(engine_kind))
    finally:
        _remove_projects(engine_kind)


def test_unhealthy_service_fails_setup_with_its_probe(pytester: pytest.Pytester,
                                                      busybox_rootfs: Path,
                                                      engine_kind: str) -> None:
    broken = WEB.replace("retries: 30", "retries: 2").replace("/hostname", "/nope")
    _project(pytester, busybox_rootfs, engine_kind, "", "def test_it(stack):\n    pass\n",
             compose_file=broken)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(errors=1)
    unhealthy = (r"E\s+.*ReadinessError: container \S+-web-1 is unhealthy after 2 failed "
                 r"checks; last: exit 1: .*")
    result.stdout.re_match_lines([unhealthy])
    result.stdout.re_match_lines([r"^E\s+web-says-hello$"])
    assert _leftovers(engine_kind) == []


def _free_pair() -> int:
    """Two consecutive free loopback ports (for a fixed host range)."""
    import socket

    for first in range(20000, 30000, 2):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", first))
                b.bind(("127.0.0.1", first + 1))
                return first
        except OSError:
            continue
    raise AssertionError("no two free consecutive ports")


def test_port_ranges_reachable(pytester: pytest.Pytester, busybox_rootfs: Path,
                               engine_kind: str) -> None:
    first = _free_pair()
    servers = " && ".join(f"httpd -p {p} -h /etc" for p in (8000, 8001, 9000))
    ranges = f"""
services:
  web:
    image: ${{BASE}}
    command: [sh, -c, "{servers} && exec httpd -f -p 9001 -h /etc"]
    ports: ["{first}-{first + 1}:8000-8001", "9000-9001"]
"""
    _project(pytester, busybox_rootfs, engine_kind, "", f"""
        import urllib.request

        def test_each_port_of_the_ranges(stack):
            web = stack["web"]
            assert web.get_addr("8000/tcp") == ("127.0.0.1", {first})
            assert web.get_addr("8001/tcp") == ("127.0.0.1", {first + 1})
            for port in (8000, 8001, 9000, 9001):
                host, published = web.get_addr(port)
                url = f"http://{{host}}:{{published}}/hostname"
                assert urllib.request.urlopen(url, timeout=10).read().strip(), port
    """, compose_file=ranges)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1)
    assert _leftovers(engine_kind) == []


def test_files_profiles_and_env_file_arguments(pytester: pytest.Pytester, busybox_rootfs: Path,
                                               engine_kind: str) -> None:
    """compose("compose.yaml", "extra.yaml", profiles=["test"], env_file=".env.test"), and
    deploy.resources.limits reaching the container."""
    (pytester.path / "extra.yaml").write_text(textwrap.dedent("""
        services:
          web:
            environment: {EXTRA: "${EXTRA_VALUE:-unset}"}
          tool:
            image: ${BASE}
            profiles: [test]
            command: [sleep, "600"]
            deploy: {resources: {limits: {memory: 32m, cpus: "0.25", pids: 20}}}
          isolated:
            image: ${BASE}
            profiles: [test]
            network_mode: none
            command: [sleep, "600"]
          other:
            image: ${BASE}
            profiles: [other]
            command: [sleep, "600"]
    """))
    (pytester.path / ".env.test").write_text("WORD=fromtestenv\nEXTRA_VALUE=given\n")
    args = '"compose.yaml", "extra.yaml", profiles=["test"], env_file=".env.test"'
    _project(pytester, busybox_rootfs, engine_kind, args, """
        def test_it(stack):
            assert sorted(stack) == ["isolated", "tool", "web"]
            code, out = stack["isolated"].exec(["sh", "-c", "tail -n +3 /proc/net/dev"])
            assert (code, [line.split(":")[0].strip() for line in out.splitlines()]) == (0, ["lo"])
            code, out = stack["web"].exec(["sh", "-c", "echo $WORD $EXTRA"])
            assert (code, out) == (0, "fromtestenv given\\n")
            assert "web-says-fromtestenv" in stack["web"].logs()
            host = stack["tool"].engine.inspect(stack["tool"].id)["HostConfig"]
            assert [host[k] for k in ("Memory", "NanoCpus", "PidsLimit")] == [
                32 * 1024 * 1024, 250_000_000, 20]
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1)
    assert _leftovers(engine_kind) == []
