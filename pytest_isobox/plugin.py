"""pytest hooks only: options, hookspecs, the run's isobox session, reports and summary."""

from __future__ import annotations

import pytest

from pytest_isobox import hookspecs
from pytest_isobox.settings import Settings, add_options


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SETTINGS] = Settings.from_config(config)


SETTINGS = pytest.StashKey[Settings]()
