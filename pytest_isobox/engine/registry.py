"""Engines found by name, so the seam, the plugin, the CLI and the API server never import an
implementation.

An engine is a factory (a class or function taking keyword options) registered under a name:
the two built in ones below, any `pytest_isobox.engines` entry point of an installed package
(`myengine = "mypkg.engine:MyEngine"`), or `register()` at run time. Built-ins are named here
as import strings so that opening one costs no scan of installed distributions.
"""

from __future__ import annotations

from pytest_isobox.engine.errors import EngineUnavailable, InvalidSpec

TYPE_CHECKING = False
if TYPE_CHECKING:  # (every `isobox` command opens an engine here: no importlib, no typing)
    from collections.abc import Callable

    from pytest_isobox.engine.protocol import Engine

ENTRY_POINT_GROUP = "pytest_isobox.engines"
_BUILTIN = {
    "native": "pytest_isobox.native.engine:NativeEngine",
    "docker": "pytest_isobox.docker.engine:DockerEngine",
}
# A built-in engine's own answer to read_only=True: the same verbs, without loading the
# whole engine for a process that only looks (`isobox ps`: native/reader.py).
_READERS = {
    "native": "pytest_isobox.native.reader:NativeReader",
}
# ... and to cached_build=True: `isobox build` answered from the build cache's files when
# every step is cached, the whole engine opened for anything else (native/buildfront.py).
_BUILD_FRONTS = {
    "native": "pytest_isobox.native.buildfront:NativeBuildFront",
}
_registered: dict[str, Callable[..., Engine]] = {}


def register(name: str, factory: Callable[..., Engine]) -> None:
    """Make `factory` the engine called `name` in this process."""
    _registered[name] = factory


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def is_builtin(name: str) -> bool:
    return name in _BUILTIN


def names() -> list[str]:
    """Every engine name this process can open."""
    return sorted({*_BUILTIN, *_registered, *_entry_points()})


def factory(name: str, *, read_only: bool = False, cached_build: bool = False
            ) -> Callable[..., Engine]:
    """The factory registered as `name` (`read_only`: a built-in's reader, `cached_build`:
    its build front, where it has one); InvalidSpec naming the known ones otherwise."""
    if name in _registered:
        return _registered[name]
    target = ((read_only and _READERS.get(name)) or (cached_build and _BUILD_FRONTS.get(name))
              or _BUILTIN.get(name) or _entry_points().get(name))
    if target is None:
        raise InvalidSpec(f"unknown engine {name!r}: expected one of {', '.join(names())}")
    module, _, attr = target.partition(":")
    try:
        found = __import__(module, fromlist=(attr,))
    except ImportError as exc:
        raise EngineUnavailable(f"engine {name!r} cannot be loaded from {module}: {exc}") from None
    return getattr(found, attr)


def open_engine(kind: str = "native", **options: object) -> Engine:
    """Make an engine by name: `native` (options: home, rootless, limits) or `docker`
    (options: base_url), or any registered one. Every engine takes `read_only=True`: the
    caller only looks (read-only CLI verbs), so the engine does no sweep and no cleanup.
    `cached_build=True` (taken here, not passed on) says the caller is about to build, most
    likely from the cache: an engine with a build front opens that instead."""
    cached_build = options.pop("cached_build", None) is True
    return factory(kind, read_only=options.get("read_only") is True,
                   cached_build=cached_build)(**options)
