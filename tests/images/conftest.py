"""Fixtures for the image store tests: a store in a private home, busybox imported into it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_isobox.images.store import ImageStore


@pytest.fixture
def store(isobox_home: Path) -> ImageStore:
    return ImageStore(isobox_home)


@pytest.fixture
def busybox_image(store: ImageStore, busybox_rootfs: Path) -> str:
    """The busybox rootfs imported as `busybox:latest`; returns its image id."""
    return store.import_rootfs(busybox_rootfs, "busybox")
