"""When the plugin wakes up: on the first isobox fixture a test needs, not when pytest loads it.

A run that uses no isobox fixture gets no session, no SIGTERM handler and no engine import;
this module is all the plugin holds until then, so it imports nothing heavy.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

import pytest

from pytest_isobox.plugin.settings import Settings

if TYPE_CHECKING:
    from pytest_isobox.plugin.session import IsoboxSession

SETTINGS_KEY = pytest.StashKey[Settings]()
SESSION_KEY = pytest.StashKey["IsoboxSession"]()
RUN_ID_KEY = pytest.StashKey[str]()  # the xdist controller's test run id (its workers' too)
SIGTERM_KEY = pytest.StashKey[object]()


def session_of(config: pytest.Config) -> IsoboxSession:
    """The run's isobox session, made (and the SIGTERM handler installed) on first use."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        from pytest_isobox.plugin.session import IsoboxSession

        session = IsoboxSession(config, config.stash[SETTINGS_KEY])
        if RUN_ID_KEY in config.stash:
            session.run_id = config.stash[RUN_ID_KEY]
        config.stash[SESSION_KEY] = session
        config.stash[SIGTERM_KEY] = teardown_on_sigterm()
    return session


def active_session(config: pytest.Config) -> IsoboxSession | None:
    """The session if an isobox fixture (or the controller's bookkeeping) made one."""
    return config.stash.get(SESSION_KEY, None)


def restore_sigterm(config: pytest.Config) -> None:
    previous = config.stash.get(SIGTERM_KEY, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


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
