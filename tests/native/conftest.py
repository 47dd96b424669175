"""Fixtures the native tests share: an engine on the test's own home, and the busybox rootfs
as an image reference (a plain directory)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def engine(isobox_home: Path):
    from pytest_isobox.native.engine import NativeEngine

    eng = NativeEngine(home=isobox_home)
    yield eng
    eng.close()


@pytest.fixture
def rootfs(busybox_rootfs: Path) -> str:
    return str(busybox_rootfs)
