"""What engines report about containers, images and networks (ContainerState, ImageInfo,
NetworkInfo): the records every read-only verb returns.

Plain classes, not dataclasses: `import dataclasses` alone costs about 7 ms (it loads
`inspect`, `ast`, `tokenize`), more than `docker ps` takes in all, and `isobox ps` needs only
these three. They behave as the dataclasses they were (same constructor, defaults, fields,
equality and repr; mutable, unhashable), re-exported by specs.py.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Record:
    """Equality and repr over `_fields`, as a dataclass's (the builder's plain records use it
    too: a cached `isobox build` loads no dataclasses either)."""

    _fields: tuple[str, ...] = ()
    __hash__ = None  # type: ignore[assignment]  # mutable, with __eq__: as @dataclass(eq=True)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()  # type: ignore[attr-defined]
        return NotImplemented

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({inner})"


class FrozenRecord(Record):
    """A Record that cannot change and so hashes, as a frozen dataclass's (its __init__ sets
    the fields through `_set`)."""

    def _set(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __hash__(self) -> int:
        return hash(self._values())


class ContainerState(Record):
    """A snapshot of one container. status is created, running, exited or dead."""

    _fields = ("id", "name", "image", "image_id", "status", "pid", "exit_code", "oom_killed",
               "created_at", "started_at", "finished_at", "ips", "ports", "labels", "command",
               "health")

    def __init__(self, id: str, name: str, image: str, image_id: str, status: str,
                 pid: int | None = None, exit_code: int | None = None, oom_killed: bool = False,
                 created_at: float | None = None, started_at: float | None = None,
                 finished_at: float | None = None, ips: dict[str, str] | None = None,
                 ports: dict[str, list[tuple[str, int]]] | None = None,
                 labels: dict[str, str] | None = None, command: list[str] | None = None,
                 health: str | None = None) -> None:
        self.id = id
        self.name = name
        self.image = image
        self.image_id = image_id
        self.status = status
        self.pid = pid
        self.exit_code = exit_code
        self.oom_killed = oom_killed
        self.created_at = created_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.ips = {} if ips is None else ips
        self.ports = {} if ports is None else ports
        self.labels = {} if labels is None else labels
        # what runs as PID 1 (Docker's Path + Args) and the healthcheck's status (starting,
        # healthy, unhealthy; None without one): what `ps` shows without a whole inspect
        self.command = [] if command is None else command
        self.health = health

    @property
    def running(self) -> bool:
        return self.status == "running"


class ImageInfo(Record):
    """An image: id is `sha256:<config digest>`; config is the OCI image config document."""

    _fields = ("id", "tags", "config", "size", "created")

    def __init__(self, id: str, tags: list[str], config: dict, size: int = 0,
                 created: str | None = None) -> None:
        self.id = id
        self.tags = tags
        self.config = config
        self.size = size
        self.created = created


class NetworkInfo(Record):
    _fields = ("name", "id", "driver", "subnet", "gateway", "containers", "labels", "internal",
               "created")

    def __init__(self, name: str, id: str, driver: str, subnet: str | None,
                 gateway: str | None, containers: dict[str, str] | None = None,
                 labels: dict[str, str] | None = None, internal: bool = False,
                 created: float | None = None) -> None:
        self.name = name
        self.id = id
        self.driver = driver
        self.subnet = subnet
        self.gateway = gateway
        self.containers = {} if containers is None else containers  # container id -> ip
        self.labels = {} if labels is None else labels
        self.internal = internal  # `network create --internal`: no way out
        self.created = created  # seconds since the epoch, when known
