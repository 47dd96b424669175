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


_MISSING = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Any) -> None:
        self.make = make


def factory(make: Any) -> Any:
    """A `record` field's default made anew for each record (a dataclass's default_factory)."""
    return _Factory(make)


def record(cls: type) -> type:
    """`cls`, a Record (or FrozenRecord) whose fields are its annotations in order, given the
    constructor @dataclass would: each field a parameter, positional or keyword, its class
    attribute (or `factory`) the default; then `__post_init__` when it has one. One small
    function compiled per class, against @dataclass's half a dozen and `dataclasses`' own
    7 ms load (specs.py's dozen took some 5 ms at every `isobox run`)."""
    names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063 - no inspect
    frozen = issubclass(cls, FrozenRecord)
    scope: dict[str, Any] = {"_MISSING": _MISSING, "_set": object.__setattr__}
    params, body = [], []
    for name in names:
        default = cls.__dict__.get(name, _MISSING)
        if isinstance(default, _Factory):
            scope[f"_f_{name}"] = default.make
            delattr(cls, name)  # (as a dataclass's: no class attribute for a factory field)
            params.append(f"{name}=_MISSING")
            value = f"_f_{name}() if {name} is _MISSING else {name}"
        elif default is not _MISSING:
            scope[f"_d_{name}"] = default
            params.append(f"{name}=_d_{name}")
            value = name
        elif params and "=" in params[-1]:
            raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one with")
        else:
            params.append(name)
            value = name
        body.append(f"_set(self, {name!r}, {value})" if frozen else f"self.{name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n    " + "\n    ".join(body or ["pass"])
    exec(source, scope)  # noqa: S102 - our own field names, checked identifiers
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[misc]
    cls._fields = names  # type: ignore[attr-defined]
    cls.__match_args__ = names  # type: ignore[attr-defined]
    return cls


def as_dict(value: Any) -> Any:
    """A record as dataclasses.asdict gives a dataclass: a dict of its fields, records,
    lists, tuples and dicts within converted and copied (dataclasses too, through asdict)."""
    if isinstance(value, Record):
        return {name: as_dict(getattr(value, name)) for name in value._fields}
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    if isinstance(value, tuple):
        items = [as_dict(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return type(value)((as_dict(k), as_dict(v)) for k, v in value.items())
    import copy
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return copy.deepcopy(value)


def replace(value: Any, /, **changes: Any) -> Any:
    """A copy of the record `value` with `changes` (dataclasses.replace)."""
    return type(value)(**{**{name: getattr(value, name) for name in value._fields}, **changes})


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
