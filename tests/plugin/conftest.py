"""Helpers for end-to-end plugin tests: each engine in turn, a base image, checks on leftovers.

Every e2e test takes `engine_kind` and runs once per engine; an engine that cannot open here
(no daemon, not root, not written yet) skips its run with the reason.
"""

from __future__ import annotations

import functools
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerNotFound, Engine, IsoboxError, open_engine

ENGINES = ("native", "docker")


@functools.cache
def engine_problem(kind: str) -> str | None:
    try:
        open_engine(kind).close()
    except (IsoboxError, ImportError) as exc:
        return f"{kind} engine unavailable: {str(exc).splitlines()[0] if str(exc) else exc!r}"
    return None


@pytest.fixture(params=ENGINES)
def engine_kind(request: pytest.FixtureRequest, isobox_home: Path) -> str:
    problem = engine_problem(request.param)
    if problem:
        pytest.skip(problem)
    return request.param


@pytest.fixture
def engine(engine_kind: str) -> Iterator[Engine]:
    """An engine of the kind under test, for checking what the inner run left."""
    eng = open_engine(engine_kind)
    yield eng
    eng.close()


@pytest.fixture
def project(pytester: pytest.Pytester, busybox_rootfs: Path, engine_kind: str) -> pytest.Pytester:
    """A pytester project whose conftest has `base`, the busybox rootfs as an image."""
    pytester.makeini(f"[pytest]\nisobox_engine = {engine_kind}\n")
    pytester.makeconftest(base_conftest(busybox_rootfs))
    return pytester


def base_conftest(rootfs: Path, extra: str = "") -> str:
    return textwrap.dedent(f"""
        from pytest_isobox import container, image, network, volume, wait

        base = image(rootfs={str(rootfs)!r}, tag="isobox-test/plugin-busybox:latest")
    """) + textwrap.dedent(extra)


def gone(engine: Engine, container_id: str) -> bool:
    try:
        engine.state(container_id)
    except ContainerNotFound:
        return True
    return False


def eventually_gone(engine: Engine, container_id: str, timeout: float = 30) -> bool:
    """Gone now or soon: another process's sweep may be removing it at this moment."""
    deadline = time.monotonic() + timeout
    while not gone(engine, container_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def remove_quietly(engine: Engine, container_id: str) -> None:
    try:
        engine.remove(container_id, force=True)
    except ContainerNotFound:
        pass
