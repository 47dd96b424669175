"""pytest-isobox: real, isolated containers for pytest, with or without a Docker daemon.

Every name is imported on first use, so loading the plugin or a conftest.py stays light.
"""

from __future__ import annotations

import importlib

_FROM_ENGINE = ("BuildError", "ContainerError", "ContainerSpec", "Engine", "EngineUnavailable",
                "ImageNotFound", "open_engine")
_FIXTURE_FACTORIES = ("image", "container", "network", "volume")


def __getattr__(name: str) -> object:
    """The engine's names, the fixture factories and `wait`, imported on first use."""
    if name in _FROM_ENGINE:
        return getattr(importlib.import_module("pytest_isobox.engine"), name)
    if name in _FIXTURE_FACTORIES:
        return getattr(importlib.import_module("pytest_isobox.plugin.fixtures"), name)
    if name == "compose":
        return importlib.import_module("pytest_isobox.plugin.compose_fixture").compose
    if name == "wait":
        return importlib.import_module("pytest_isobox.plugin.wait")
    raise AttributeError(f"module 'pytest_isobox' has no attribute {name!r}")


__all__ = [
    "BuildError",
    "ContainerError",
    "ContainerSpec",
    "Engine",
    "EngineUnavailable",
    "ImageNotFound",
    "compose",
    "container",
    "image",
    "network",
    "open_engine",
    "volume",
    "wait",
]
