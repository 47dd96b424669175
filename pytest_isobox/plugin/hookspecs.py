"""Hooks a conftest.py or plugin can implement to follow what isobox does.

Registered through `pytest_addhooks`; each is called with keyword arguments, in the process
(or xdist worker) that did the work. The names carry pytest's `pytest_` prefix because
pytest only takes functions so named from a conftest.py as hook implementations. Implementations must not raise: an exception fails the
test whose fixture triggered the hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_isobox.engine import BuildStep
    from pytest_isobox.plugin.handles import Container


@pytest.hookspec
def pytest_isobox_container_created(container: Container) -> None:
    """A container was created and started; it is not yet ready.

    Called for containers of fixtures and of the `isobox` fixture, and once per process for
    a reused or shared container that this process attached to.
    """


@pytest.hookspec
def pytest_isobox_container_ready(container: Container, seconds: float) -> None:
    """A container passed its readiness check, `seconds` after it was started."""


@pytest.hookspec
def pytest_isobox_container_removed(container: Container) -> None:
    """A container was stopped and removed (not called for containers that are kept)."""


@pytest.hookspec
def pytest_isobox_build_step(step: BuildStep) -> None:
    """One Dockerfile instruction of an image build finished, executed or from the cache."""
