"""What the native builds' tests share: an engine on the test's own home, with a busybox base."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

#: the base image every native build test starts FROM
BASE = "isobox-test/busybox:latest"


@pytest.fixture
def engine(isobox_home: Path, busybox_rootfs: Path) -> Iterator:
    """A NativeEngine on the test's home with BASE imported, closed afterwards."""
    from pytest_isobox.native.engine import NativeEngine

    eng = NativeEngine(home=isobox_home)
    try:
        eng.import_rootfs(busybox_rootfs, BASE)
        yield eng
    finally:
        eng.close()
