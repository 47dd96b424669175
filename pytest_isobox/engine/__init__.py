"""The one seam between users of containers and the engines that make them.

The plugin, the CLI, the builder and the API server speak only to `Engine` (protocol.py) and
find engines by name (registry.py): `native` (embedded, daemonless) and `docker` (a Docker
Engine over its REST API) are built in. Everything here is plain data, errors and the
protocol: no engine-specific knowledge, and no import of an implementation.
"""

from pytest_isobox.engine.errors import (
    BuildError,
    ConflictError,
    ContainerError,
    ContainerNotFound,
    EngineUnavailable,
    ImageNotFound,
    InvalidSpec,
    IsoboxError,
    NetworkNotFound,
    VolumeNotFound,
)
from pytest_isobox.engine.protocol import Engine, require
from pytest_isobox.engine.registry import open_engine, register
from pytest_isobox.engine.specs import (
    PERSISTENT_LABEL,
    BuildStep,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    DeviceSpec,
    EngineEvent,
    ExecResult,
    HealthcheckSpec,
    ImageInfo,
    LogStream,
    MountSpec,
    NetworkAttachment,
    NetworkInfo,
    PortSpec,
    ProcessStream,
    RestartPolicy,
)

__all__ = [
    "PERSISTENT_LABEL", "ULIMIT_NAMES", "BuildError", "BuildStep", "ConflictError",
    "ContainerError", "ContainerNotFound", "ContainerSpec", "ContainerState", "ContainerStats",
    "DeviceSpec", "Engine", "EngineEvent", "EngineUnavailable", "ExecResult", "HealthcheckSpec", "ImageInfo", "ImageNotFound", "InvalidSpec",
    "IsoboxError", "LogStream", "MountSpec", "NetworkAttachment", "NetworkInfo",
    "NetworkNotFound", "PortSpec", "ProcessStream", "RestartPolicy", "VolumeNotFound", "open_engine", "parse_size",
    "parse_ulimit", "register", "require",
]

_FROM_DOCKERARGS = ("ULIMIT_NAMES", "parse_size", "parse_ulimit")


def __getattr__(name: str) -> object:
    """Docker's size and ulimit syntax, kept importable from the seam: dockerargs parses
    them (imported on use, as dockerargs itself imports the seam's specs)."""
    if name in _FROM_DOCKERARGS:
        from pytest_isobox import dockerargs

        return getattr(dockerargs, name)
    raise AttributeError(f"module 'pytest_isobox.engine' has no attribute {name!r}")
