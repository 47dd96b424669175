"""The terminal summary says which limits each rootless container got when best-effort left
some out: from the engine as a throwaway user, and end to end through the plugin."""

from __future__ import annotations

import os

import pytest

from pytest_isobox.engine import ContainerSpec
from pytest_isobox.native.engine import NativeEngine
from pytest_isobox.plugin.reports import ContainerRecord, RunReport, limits_note, summary_lines
from tests.native.rootless_users import ThrowawayUser, run_as, throwaway_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates throwaway users: needs root")

HEADING = "limits (rootless, --isobox-limits=best-effort):"


@pytest.fixture(scope="module")
def user() -> ThrowawayUser:
    with throwaway_user(subids=True, rootfs=True) as made:
        yield made


def _summary_of_limited_and_plain(rootfs: str) -> list[str]:
    report = RunReport()
    with NativeEngine(limits="best-effort") as engine:
        engine.import_rootfs(rootfs, "bb")
        for fixture, limits in (("limited", {"mem_limit": 64 << 20, "pids_limit": 32}),
                                ("plain", {})):
            state = engine.run(ContainerSpec(image="bb", command=["true"], name=fixture,
                                             network_mode="none", **limits))
            engine.wait(state.id)
            report.containers.append(ContainerRecord(fixture, fixture, state.id, "bb",
                                                     limits=limits_note(engine, state.id)))
            engine.remove(state.id)
    return summary_lines(report)


def test_summary_lists_the_limits_a_rootless_user_got(user: ThrowawayUser) -> None:
    lines = run_as(user, _summary_of_limited_and_plain, str(user.home / "rootfs"))
    start = lines.index(HEADING)
    listed = lines[start + 1:]
    assert len(listed) == 1, lines  # the container that asked for no limit is not listed
    assert listed[0].startswith("  limited (limited): no limits applied; skipped "), listed
    assert "memory" in listed[0] and "pids" in listed[0]


def test_no_limits_line_when_nothing_was_skipped() -> None:
    report = RunReport(containers=[
        ContainerRecord("a", "a", "1", "bb"),
        ContainerRecord("b", "b", "2", "bb", limits="applied memory 64m")])
    assert not any(line.startswith("limits") for line in summary_lines(report))


def test_plugin_summary_forced_rootless_best_effort(pytester: pytest.Pytester, busybox_rootfs,
                                                    isobox_home,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the plugin (forced rootless, as root: no delegated cgroup on this machine)."""
    monkeypatch.setenv("ISOBOX_ROOTLESS", "1")
    pytester.makeini("[pytest]\nisobox_engine = native\nisobox_limits = best-effort\n")
    pytester.makeconftest(f"""
from pytest_isobox import container, image

base = image(rootfs={str(busybox_rootfs)!r}, tag="isobox-test/rootless-report:latest")
box = container(image="{{base}}", command="sleep 300", init=True, mem_limit="64m",
                network="none", ready=False)
""")
    pytester.makepyfile("def test_box(box):\n    assert box.id\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([HEADING, "  box (*): no limits applied; skipped memory*"])
