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

__all__ = [
    "BuildError",
    "ContainerError",
    "ContainerSpec",
    "Engine",
    "EngineUnavailable",
    "ImageNotFound",
    "open_engine",
]
