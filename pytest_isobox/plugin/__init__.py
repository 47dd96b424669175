"""pytest hooks only: options, hookspecs, fixture registration, report sections, summary.

Loading the plugin costs next to nothing: the session, its SIGTERM handler and every engine
module wait for the first test that needs an isobox fixture (see activation.py).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_isobox.plugin import hookspecs
from pytest_isobox.plugin.activation import (
    RUN_ID_KEY,
    SETTINGS_KEY,
    active_session,
    restore_sigterm,
    session_of,
)
from pytest_isobox.plugin.settings import Settings, add_options, given_options

if TYPE_CHECKING:
    from pytest_isobox.engine import Engine
    from pytest_isobox.plugin.handles import Container
    from pytest_isobox.plugin.imperative import Isobox

ENGINE_FIXTURE = "isobox_engine"  # every isobox fixture depends on it
MARKERS = [
    ("isobox: the test uses isobox containers (set by the plugin on every test that needs an "
     "isobox fixture; `-m 'not isobox'` runs the others)"),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    config.stash[SETTINGS_KEY] = Settings.from_config(config)  # a bad value fails the run now
    if hasattr(config, "workerinput"):
        config.stash[RUN_ID_KEY] = config.workerinput["testrunuid"]  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    restore_sigterm(config)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark container tests; share the networks of shared containers (fixtures.py)."""
    used = [item for item in items if uses_isobox(item)]
    for item in used:
        item.add_marker("isobox")
    if used:
        from pytest_isobox.plugin.fixtures import share_container_networks

        share_container_networks(used)


def pytest_report_header(config: pytest.Config) -> str | None:
    """The settings line, up front when an isobox option was given (else after collection)."""
    return header_line(config) if given_options(config) else None


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]
                                   ) -> str | None:
    if given_options(config) or not any(uses_isobox(item) for item in items):
        return None
    return header_line(config)


def header_line(config: pytest.Config) -> str:
    s = config.stash[SETTINGS_KEY]
    extra = "".join(f" {flag}" for flag, on in
                    (("reuse", s.reuse), ("no-cache", s.no_cache)) if on)
    return f"isobox: engine {s.engine}, keep {s.keep}, home {s.store}{extra}"


def uses_isobox(item: pytest.Item) -> bool:
    return ENGINE_FIXTURE in getattr(item, "fixturenames", ())


@pytest.fixture(scope="session")
def isobox_engine(request: pytest.FixtureRequest) -> Engine:
    """The run's engine; tests using it are skipped, with the reason, when it is unavailable."""
    return session_of(request.config).require_engine()


@pytest.fixture
def isobox(request: pytest.FixtureRequest, isobox_engine: Engine) -> Generator[Isobox]:
    """Run containers and build images imperatively; all removed at the end of the test."""
    from pytest_isobox.plugin.imperative import Isobox

    runner = Isobox(session_of(request.config), request)
    yield runner
    runner.close()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell workers who runs the test run (for the dead-run sweep)."""
    from pytest_isobox.plugin.sharing import controller_token

    node.workerinput["isobox_controller"] = controller_token()
    node.config.stash[RUN_ID_KEY] = node.workerinput["testrunuid"]
    session = active_session(node.config)
    if session is not None:
        session.run_id = node.workerinput["testrunuid"]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: take in a finished worker's containers, images and cleanups."""
    data = getattr(node, "workeroutput", {}).get("isobox")
    if data:
        session_of(node.config).report.merge(data)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test's report gets the logs of every container it used.

    They go into the failure's own text (after the traceback), which the terminal prints
    and `--junitxml` writes into `<failure>`: CI dashboards show them with the failure.
    """
    report = yield
    session = active_session(item.config)
    if session is None or not report.failed or report.when == "teardown":
        return report
    from pytest_isobox.plugin.reports import log_section

    for container in _containers_of(item):
        session.failed_ids.add(container.id)
        try:
            title, text = log_section(container.fixture, container.name, container.logs())
        except Exception as exc:  # noqa: BLE001 - a report must survive a vanished container
            title, text = f"isobox container {container.fixture} logs", f"(unavailable: {exc})"
        _add_section(report, title, text)
    return report


def _add_section(report: pytest.TestReport, title: str, text: str) -> None:
    longrepr = report.longrepr
    if hasattr(longrepr, "addsection"):  # a traceback: part of the failure text everywhere
        longrepr.addsection(title, text)  # type: ignore[union-attr]
    else:  # a plain-text failure (a plugin's repr_failure): a report section instead
        report.sections.append((title, text))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """After every fixture is torn down: leave shared containers, send the report, close."""
    config = session.config
    isobox_session = active_session(config)
    if isobox_session is None and not _shared_registry_exists(config):
        return
    isobox_session = isobox_session or session_of(config)
    from pytest_isobox.plugin.sharing import SharedRegistry

    registry = SharedRegistry.of(isobox_session)
    try:
        if hasattr(config, "workerinput"):
            registry.leave(isobox_session.shared_engine)
            config.workeroutput["isobox"] = isobox_session.report.to_dict()  # type: ignore[attr-defined]
        else:
            registry.finish(isobox_session.shared_engine)
    finally:
        isobox_session.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    isobox_session = active_session(terminalreporter.config)
    if isobox_session is None or isobox_session.report.empty:
        return
    from pytest_isobox.plugin.reports import summary_lines

    terminalreporter.ensure_newline()
    terminalreporter.section("isobox")
    for line in summary_lines(isobox_session.report):
        terminalreporter.write_line(line)


def _shared_registry_exists(config: pytest.Config) -> bool:
    """Under xdist, another worker may have shared containers this process must help end."""
    if RUN_ID_KEY not in config.stash:
        return False
    from pytest_isobox.plugin.sharing import registry_path

    return registry_path(config.stash[SETTINGS_KEY].store, config.stash[RUN_ID_KEY]).exists()


def _containers_of(item: pytest.Item) -> list[Container]:
    from pytest_isobox.plugin.compose_fixture import Stack
    from pytest_isobox.plugin.handles import Container
    from pytest_isobox.plugin.imperative import Isobox

    found: list[Container] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Container):
            found.append(value)
        elif isinstance(value, (Isobox, Stack)):
            found += value.containers
    return found
