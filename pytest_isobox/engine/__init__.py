"""The one seam between users of containers and the engines that make them.

The plugin, the CLI, the builder and the API server speak only to `Engine` (protocol.py) and
find engines by name (registry.py): `native` (embedded, daemonless) and `docker` (a Docker
Engine over its REST API) are built in. Everything here is plain data, errors and the
protocol: no engine-specific knowledge, and no import of an implementation.
"""

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (2 ms)

# Where each name of the seam lives. Nothing is imported until used (PEP 562), so a command
# that needs only the errors (`isobox ps` catches IsoboxError) loads no dataclass of specs.py.
_HOMES = {
    "errors": ("BuildError", "ConflictError", "ContainerError", "ContainerNotFound",
               "EngineUnavailable", "ImageNotFound", "InvalidSpec", "IsoboxError",
               "NetworkNotFound", "VolumeNotFound"),
    "protocol": ("Engine", "require"),
    "registry": ("open_engine", "register"),
    "specs": ("PERSISTENT_LABEL", "BuildStep", "ContainerSpec", "ContainerStats",
              "DeviceSpec", "EngineEvent", "ExecResult", "HealthcheckSpec", "LogStream",
              "MountSpec", "NetworkAttachment", "PortSpec", "ProcessStream", "RestartPolicy"),
    # what read-only verbs get back, without specs.py's dataclasses (records.py)
    "records": ("ContainerState", "ImageInfo", "NetworkInfo"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
# Docker's size and ulimit syntax, kept importable from the seam: dockerargs parses them
_FROM_DOCKERARGS = ("ULIMIT_NAMES", "parse_size", "parse_ulimit")

__all__ = [
    "PERSISTENT_LABEL", "ULIMIT_NAMES", "BuildError", "BuildStep", "ConflictError",
    "ContainerError", "ContainerNotFound", "ContainerSpec", "ContainerState", "ContainerStats",
    "DeviceSpec", "Engine", "EngineEvent", "EngineUnavailable", "ExecResult", "HealthcheckSpec",
    "ImageInfo", "ImageNotFound", "InvalidSpec", "IsoboxError", "LogStream", "MountSpec",
    "NetworkAttachment", "NetworkInfo", "NetworkNotFound", "PortSpec", "ProcessStream",
    "RestartPolicy", "VolumeNotFound", "open_engine", "parse_size", "parse_ulimit", "register",
    "require",
]

if TYPE_CHECKING:
    from pytest_isobox.dockerargs import ULIMIT_NAMES, parse_size, parse_ulimit
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
    from pytest_isobox.engine.records import ContainerState, ImageInfo, NetworkInfo
    from pytest_isobox.engine.registry import open_engine, register
    from pytest_isobox.engine.specs import (
        PERSISTENT_LABEL,
        BuildStep,
        ContainerSpec,
        ContainerStats,
        DeviceSpec,
        EngineEvent,
        ExecResult,
        HealthcheckSpec,
        LogStream,
        MountSpec,
        NetworkAttachment,
        PortSpec,
        ProcessStream,
        RestartPolicy,
    )


def __getattr__(name: str) -> object:
    """A name of the seam, its module imported on first use and the name then kept here."""
    module = _MODULE_OF.get(name)
    if module is not None:  # (__import__, not importlib: importlib loads warnings)
        value = getattr(__import__(f"pytest_isobox.engine.{module}", fromlist=(name,)), name)
    elif name in _FROM_DOCKERARGS:
        value = getattr(__import__("pytest_isobox.dockerargs", fromlist=(name,)), name)
    else:
        raise AttributeError(f"module 'pytest_isobox.engine' has no attribute {name!r}")
    globals()[name] = value
    return value
