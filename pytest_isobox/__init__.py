"""pytest-isobox: real, isolated containers for pytest, with or without a Docker daemon.

Every name is imported on first use, so loading the plugin or a conftest.py stays light.
"""

from __future__ import annotations

_FROM_ENGINE = ("BuildError", "ContainerError", "ContainerSpec", "Engine", "EngineUnavailable",
                "ImageNotFound", "open_engine")
_FIXTURE_FACTORIES = ("image", "container", "network", "volume")


def __getattr__(name: str) -> object:
    """The engine's names, the fixture factories and `wait`, imported on first use (with
    `from ... import`, not importlib: every `isobox` command imports this package)."""
    if name in _FROM_ENGINE:
        from pytest_isobox import engine

        return getattr(engine, name)
    if name in _FIXTURE_FACTORIES:
        from pytest_isobox.plugin import fixtures

        return getattr(fixtures, name)
    if name == "compose":
        from pytest_isobox.plugin.compose_fixture import compose

        return compose
    if name == "wait":
        from pytest_isobox.plugin import wait

        return wait
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
