"""pytest hooks only: options, hookspecs, fixture registration, report sections, summary."""

from __future__ import annotations

import signal
import threading
from collections.abc import Generator
from typing import Any

import pytest

from pytest_isobox import hookspecs
from pytest_isobox.fixtures import isobox_engine  # noqa: F401 - registered as a fixture
from pytest_isobox.handles import Container
from pytest_isobox.imperative import Isobox, isobox  # noqa: F401 - registered as a fixture
from pytest_isobox.reports import log_section, summary_lines
from pytest_isobox.session import SESSION_KEY, IsoboxSession
from pytest_isobox.settings import Settings, add_options
from pytest_isobox.sharing import SharedRegistry, controller_token


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SESSION_KEY] = IsoboxSession(config, Settings.from_config(config))
    config.stash[SIGTERM_KEY] = teardown_on_sigterm()


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(SIGTERM_KEY, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


SIGTERM_KEY = pytest.StashKey[object]()


def pytest_report_header(config: pytest.Config) -> str:
    s = config.stash[SESSION_KEY].settings
    extra = "".join(f" {flag}" for flag, on in
                    (("reuse", s.reuse), ("no-cache", s.no_cache)) if on)
    return f"isobox: engine {s.engine}, keep {s.keep}, home {s.store}{extra}"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell workers who runs the test run (for the dead-run sweep)."""
    node.workerinput["isobox_controller"] = controller_token()
    node.config.stash[SESSION_KEY].run_id = node.workerinput["testrunuid"]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: take in a finished worker's containers, images and cleanups."""
    data = getattr(node, "workeroutput", {}).get("isobox")
    if data:
        node.config.stash[SESSION_KEY].report.merge(data)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test's report gets the logs of every container it used."""
    report = yield
    if report.failed and report.when != "teardown":
        session = item.config.stash[SESSION_KEY]
        for container in _containers_of(item):
            session.failed_ids.add(container.id)
            try:
                report.sections.append(log_section(container.fixture, container.name,
                                                   container.logs()))
            except Exception as exc:  # noqa: BLE001 - a report must survive a vanished container
                report.sections.append((f"isobox container {container.fixture} logs",
                                        f"(unavailable: {exc})"))
    return report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """After every fixture is torn down: leave shared containers, send the report, close."""
    config = session.config
    isobox_session = config.stash[SESSION_KEY]
    registry = SharedRegistry.of(isobox_session)
    try:
        if hasattr(config, "workerinput"):
            registry.leave(isobox_session.engine)
            config.workeroutput["isobox"] = isobox_session.report.to_dict()  # type: ignore[attr-defined]
        else:
            registry.finish(isobox_session.engine)
    finally:
        isobox_session.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    report = terminalreporter.config.stash[SESSION_KEY].report
    if report.empty:
        return
    terminalreporter.ensure_newline()
    terminalreporter.section("isobox")
    for line in summary_lines(report):
        terminalreporter.write_line(line)


def _containers_of(item: pytest.Item) -> list[Container]:
    found: list[Container] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Container):
            found.append(value)
        elif isinstance(value, Isobox):
            found += value.containers
    return found


def teardown_on_sigterm() -> object:
    """Make SIGTERM (a CI job's timeout, `kill`) end the run like Ctrl-C, so fixtures tear
    their containers down; only where nobody else handles SIGTERM. The old handler or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        return None

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, interrupt)
    return previous
