"""pytest-isobox: real, isolated containers for pytest, with or without a Docker daemon."""

from pytest_isobox.engine import (
    BuildError,
    ContainerError,
    ContainerSpec,
    Engine,
    EngineUnavailable,
    ImageNotFound,
    open_engine,
)

_FIXTURE_FACTORIES = ("image", "container", "network", "volume")


def __getattr__(name: str) -> object:
    """The fixture factories and `wait`, imported on first use so the CLI stays light."""
    if name in _FIXTURE_FACTORIES:
        from pytest_isobox import fixtures

        return getattr(fixtures, name)
    if name == "wait":
        import importlib

        return importlib.import_module("pytest_isobox.wait")
    raise AttributeError(f"module 'pytest_isobox' has no attribute {name!r}")


__all__ = [
    "BuildError",
    "ContainerError",
    "ContainerSpec",
    "Engine",
    "EngineUnavailable",
    "ImageNotFound",
    "container",
    "image",
    "network",
    "open_engine",
    "volume",
    "wait",
]
