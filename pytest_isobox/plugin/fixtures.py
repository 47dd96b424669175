"""The fixture factories `image()`, `container()`, `network()`, `volume()` for conftest.py.

Each call returns a real pytest fixture, named by the variable it is assigned to:

    app_net = network()
    web_image = image(path="fixtures/web")
    web = container(image="{web_image}", network="{app_net}", ports=["8000/tcp"])

`"{fixture}"` references in the arguments become the fixture's own arguments, so pytest knows
every dependency at collection time (and orders setup and teardown by it). Relative paths are
taken from the directory of the module that calls the factory. Nothing here touches an
engine before a test needs the fixture; without one, the test is skipped with the reason.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_isobox import run_options_table
from pytest_isobox.engine import (
    ConflictError,
    DeviceSpec,
    EngineUnavailable,
    HealthcheckSpec,
    InvalidSpec,
    MountSpec,
    NetworkNotFound,
    VolumeNotFound,
)
from pytest_isobox.plugin.activation import session_of
from pytest_isobox.plugin.container_options import FIXTURE_LABEL, ContainerOptions
from pytest_isobox.plugin.templating import WORKER_ID, references, render

if TYPE_CHECKING:  # the rest is imported when a fixture is set up, so conftest.py stays light
    from pytest_isobox.engine import Engine
    from pytest_isobox.plugin import wait
    from pytest_isobox.plugin.handles import Container, Image, Network, Volume
    from pytest_isobox.plugin.session import IsoboxSession

    Produce = Callable[[pytest.FixtureRequest, IsoboxSession, dict[str, Any]], Generator[Any]]

SCOPES = ("function", "class", "module", "package", "session")


def image(path: str | None = None, *, dockerfile: str | None = None,
          buildargs: Mapping[str, str] | None = None, target: str | None = None,
          tag: str | None = None, rootfs: str | None = None, bootstrap: str | None = None,
          variant: str = "minbase", include: Sequence[str] = ()) -> Any:
    """A session fixture giving an `Image` built from a Dockerfile context, or imported.

    `path` is the build context (`dockerfile` relative to it, Docker's default `Dockerfile`);
    builds are cached across runs by the engine's build cache. `rootfs` instead imports a
    root filesystem: a directory, a tar, or an executable recipe run as `recipe DIR`; the
    same content is imported once and keeps its image id. `bootstrap="debian:bookworm"`
    makes a Debian base with debootstrap from the machine's apt mirror (`variant`, `include`
    packages), cached by those inputs.
    """
    if sum(x is not None for x in (path, rootfs, bootstrap)) != 1:
        raise InvalidSpec("image(): give one of path= (a build context), rootfs= or bootstrap=")
    base = _caller_dir()
    args = {"path": path, "dockerfile": dockerfile, "buildargs": dict(buildargs or {}),
            "target": target, "tag": tag, "rootfs": rootfs, "bootstrap": bootstrap,
            "variant": variant, "include": list(include)}

    def produce(request: pytest.FixtureRequest, session: IsoboxSession,
                values: dict[str, Any]) -> Generator[Image]:
        from pytest_isobox.names import ROOTFS_DIR_PREFIX, owned_temp_prefix
        from pytest_isobox.plugin.rootfs import materialize
        from pytest_isobox.processes import ProcessIdentity

        a = render(args, values)
        if a["bootstrap"] is not None:
            yield session.bootstrap_image(a["bootstrap"], variant=a["variant"],
                                          include=a["include"], tag=a["tag"])
            return
        if a["rootfs"] is not None:
            # named after this process, so a run killed while importing has it reaped
            prefix = owned_temp_prefix(ROOTFS_DIR_PREFIX, ProcessIdentity.current().token("-"))
            with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
                source = materialize(base / a["rootfs"], Path(workdir))
                imported = session.import_rootfs(source, tag=a["tag"], label=a["rootfs"])
            yield imported  # the image is in the engine's store: the copy is gone already
            return
        yield session.build_image(base / a["path"], dockerfile=a["dockerfile"],
                                  buildargs=a["buildargs"], target=a["target"], tag=a["tag"],
                                  source=a["path"])

    return _make_fixture(FixtureMeta("image"), "session", references(args), produce)


def container(image: str | Image, *, command: str | Sequence[str] | None = None,
              entrypoint: str | Sequence[str] | None = None,
              environment: Mapping[str, Any] | Sequence[str] | None = None,
              working_dir: str | None = None, user: str | None = None,
              hostname: str | None = None, ports: Sequence[str | int] = (),
              network: str | None = None,
              networks: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
              aliases: Sequence[str] = (),
              mounts: Sequence[str | Mapping[str, Any] | MountSpec] = (),
              mem_limit: int | str | None = None, cpus: float | str | None = None,
              pids_limit: int | str | None = None,
              labels: Mapping[str, str] | None = None, stop_signal: str | None = None,
              devices: Sequence[str | DeviceSpec] = (),
              sysctls: Mapping[str, Any] | Sequence[str] | None = None,
              env_file: str | Path | Sequence[str | Path] | None = None,
              publish_all: bool = False, expose: Sequence[str | int] = (),
              ip: str | None = None, platform: str | None = None, restart: str | None = None,
              healthcheck: Mapping[str, Any] | HealthcheckSpec | bool | None = None,
              ready: wait.Strategy | None | bool = None, timeout: float | None = None,
              name: str | None = None, scope: str = "session", shared: bool = False,
              **run_options: Any) -> Any:
    """A fixture giving a started, ready `Container`, removed when its scope ends.

    `ready` is a `wait` strategy (default: running, healthy when a healthcheck is in force,
    the container's or its image's, and every published port accepts connections; False:
    do not wait); `timeout` overrides --isobox-timeout. On a named
    network the container also answers to its fixture name. `shared=True` (session scope)
    starts one container for all xdist workers of the run. `run_options` are the simple
    run options by their spec field (run_options_table.TABLE: read_only, privileged, init,
    cap_add, cap_drop, shm_size, extra_hosts, dns, dns_search, dns_options).
    """
    if scope not in SCOPES:
        raise InvalidSpec(f"container(scope={scope!r}): expected one of {', '.join(SCOPES)}")
    if shared and scope != "session":
        raise InvalidSpec(f"container(shared=True) needs scope='session', not {scope!r}")
    for unknown in set(run_options) - set(run_options_table.BY_FIELD):
        raise TypeError(f"container() got an unexpected keyword argument {unknown!r}")
    options = {"image": image, "command": command, "entrypoint": entrypoint,
               "environment": environment, "working_dir": working_dir, "user": user,
               "hostname": hostname, "ports": list(ports), "network": network,
               "networks": networks, "aliases": list(aliases), "mounts": list(mounts),
               "mem_limit": mem_limit, "cpus": cpus, "pids_limit": pids_limit,
               "labels": dict(labels or {}), "stop_signal": stop_signal,
               "devices": list(devices), "sysctls": sysctls, "env_file": env_file,
               "publish_all": publish_all, "expose": list(expose), "ip": ip,
               "platform": platform, "restart": restart, "healthcheck": healthcheck,
               **{row.field: _listed(run_options.get(row.field, row.default))
                  for row in run_options_table.TABLE}}
    base = _caller_dir()
    _check(options, base)
    deps = references(options) | references(name)
    meta = FixtureMeta("container", shared,
                       networks=references(network) | references(networks) if shared else set())

    def produce(request: pytest.FixtureRequest, session: IsoboxSession,
                values: dict[str, Any]) -> Generator[Container]:
        from pytest_isobox.plugin.handles import Network

        opts = ContainerOptions(**render(options, values))
        networks_of = {k: str(v) for k, v in values.items() if isinstance(v, Network)}
        launch = {"fixture": request.fixturename, "ready": ready, "timeout": timeout,
                  "base": base, "network_names": networks_of,
                  "name": render(name, values) if name else None}
        if shared and session.worker_count > 1:
            yield from _shared_container(session, opts, launch)
            return
        handle = session.launch(opts, **launch, reusable=scope == "session")
        try:
            yield handle
        finally:
            session.dispose(handle)

    return _make_fixture(meta, scope, deps, produce)


def network(*, name: str | None = None, subnet: str | None = None, scope: str = "session",
            shared: bool = False) -> Any:
    """A fixture giving a named `Network` (its own bridge and subnet), removed after use.

    Containers on it reach each other by name and by fixture name. `shared=True` makes one
    network for all xdist workers; a network a shared container is on is shared by itself
    (see `share_container_networks`), so every worker's containers reach that one by name.
    """
    if scope not in SCOPES:
        raise InvalidSpec(f"network(scope={scope!r}): expected one of {', '.join(SCOPES)}")
    meta = FixtureMeta("network", shared)

    def produce(request: pytest.FixtureRequest, session: IsoboxSession,
                values: dict[str, Any]) -> Generator[Network]:
        from pytest_isobox.plugin.handles import Network
        from pytest_isobox.plugin.sharing import SharedRegistry

        sharing = meta.shared and session.worker_count > 1
        engine = session.shared_engine() if sharing else session.engine()
        net_name = (render(name, values) if name
                    else session.resource_name(request.fixturename, shared=meta.shared,
                                               stable=session.settings.reuse))
        if sharing:
            SharedRegistry.of(session).acquire(
                f"network:{request.fixturename}",
                lambda: _create_network(engine, net_name, subnet, request.fixturename).name)
            info = engine.network_inspect(net_name)
            yield Network(info.name, info.id, info.subnet, info.gateway)
            return
        handle = _create_network(engine, net_name, subnet, request.fixturename,
                                 exist_ok=session.settings.reuse)
        try:
            yield handle
        finally:
            if not session.settings.reuse:
                _remove(lambda: engine.network_remove(handle.name), NetworkNotFound,
                        keeping=session.settings.keep != "never")

    return _make_fixture(meta, scope, references(name), produce)


def volume(*, name: str | None = None, scope: str = "session") -> Any:
    """A fixture giving a named `Volume`, removed after use (kept with --isobox-reuse)."""
    if scope not in SCOPES:
        raise InvalidSpec(f"volume(scope={scope!r}): expected one of {', '.join(SCOPES)}")

    def produce(request: pytest.FixtureRequest, session: IsoboxSession,
                values: dict[str, Any]) -> Generator[Volume]:
        from pytest_isobox.plugin.handles import Volume

        engine = session.engine()
        vol_name = render(name, values) if name else session.resource_name(
            request.fixturename, stable=session.settings.reuse)
        try:
            handle = Volume(engine.volume_create(vol_name) or vol_name)
        except ConflictError:
            if not session.settings.reuse:
                raise
            handle = Volume(vol_name)  # an earlier run's, kept for reuse
        try:
            yield handle
        finally:
            if not session.settings.reuse:
                keeping = session.settings.keep != "never"  # a kept container keeps its data
                _remove(lambda: engine.volume_remove(handle.name, force=not keeping),
                        VolumeNotFound, keeping=keeping)

    return _make_fixture(FixtureMeta("volume"), scope, references(name), produce)


# --------------------------------------------------------------------------- sharing

@dataclass
class FixtureMeta:
    """What a factory made, kept on the fixture function for collection-time decisions."""

    kind: str  # image, container, network, volume
    shared: bool = False  # a network's is set at collection when a shared container uses it
    networks: set[str] = field(default_factory=set)  # a shared container's network fixtures


def share_container_networks(items: list[pytest.Item]) -> None:
    """Share the network fixtures of shared containers (one network for the whole run).

    A shared container is started once, by the first worker that needs it; on that worker's
    own network it would keep the network busy at that worker's teardown and be out of the
    other workers' reach. Every worker collects the same tests, so each decides the same.
    """
    for item in items:
        fixtureinfo = getattr(item, "_fixtureinfo", None)
        if fixtureinfo is None:
            continue
        defs = fixtureinfo.name2fixturedefs
        for name in item.fixturenames:
            meta = _meta_of(defs, name)
            if meta is None or meta.kind != "container" or not meta.shared:
                continue
            for network_name in meta.networks:
                net = _meta_of(defs, network_name)
                if net is not None and net.kind == "network":
                    net.shared = True


def _meta_of(defs: Mapping[str, Sequence[Any]], name: str) -> FixtureMeta | None:
    """The metadata of the fixture `name` resolves to for an item (the last definition)."""
    found = defs.get(name)
    return getattr(found[-1].func, "isobox_meta", None) if found else None


# --------------------------------------------------------------------------- helpers

def _make_fixture(meta: FixtureMeta, scope: str, deps: set[str], produce: Produce) -> Any:
    """A pytest fixture whose arguments are `request`, the engine and every referenced fixture."""
    argnames = ["request", "isobox_engine", *sorted(deps - {"request", "isobox_engine"})]

    def isobox_fixture(**kwargs: Any) -> Generator[Any]:
        request: pytest.FixtureRequest = kwargs.pop("request")
        kwargs.pop("isobox_engine")
        session = session_of(request.config)
        kwargs[WORKER_ID] = session.worker_id
        try:
            yield from produce(request, session, kwargs)
        except EngineUnavailable as exc:  # a part of the engine this fixture needs is missing
            pytest.skip(f"isobox: {session.settings.engine} engine: "
                        f"{(str(exc).splitlines() or [''])[0]}")

    isobox_fixture.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in argnames])
    isobox_fixture.__name__ = isobox_fixture.__qualname__ = f"isobox_{meta.kind}"
    isobox_fixture.isobox_meta = meta  # type: ignore[attr-defined]
    return pytest.fixture(scope=scope)(isobox_fixture)  # type: ignore[call-overload]


def _listed(value: Any) -> Any:
    """A tuple as a list, so that _check and templating see its items one by one."""
    return list(value) if isinstance(value, tuple) else value


def _check(options: dict[str, Any], base: Path) -> None:
    """Raise InvalidSpec at declaration for every value that holds no reference yet."""
    fixed = {k: [item for item in v if not references(item)] if isinstance(v, list) else v
             for k, v in options.items() if not references(v) or isinstance(v, list)}
    ContainerOptions(**{**fixed, "image": "check"}).to_spec(
        name="check", fixture="check", worker="check", base=base, persistent=False)


def _shared_container(session: IsoboxSession, opts: ContainerOptions,
                      launch: dict[str, Any]) -> Generator[Container]:
    from pytest_isobox.plugin.sharing import SharedRegistry

    fixture = launch["fixture"]
    name = launch["name"] or session.resource_name(fixture, shared=True)
    started: list[Container] = []

    def start() -> str:
        started.append(session.launch(opts, **{**launch, "name": name}, shared=True))
        return started[0].id

    container_id, _ = SharedRegistry.of(session).acquire(f"container:{fixture}", start)
    if started:
        handle = started[0]
    else:
        spec = opts.to_spec(name=name, fixture=fixture, worker=session.worker_id,
                            base=launch["base"], persistent=True)
        handle = session.attach(container_id, spec, fixture=fixture,
                                network_names=launch["network_names"])
    yield handle
    session.record_stats(handle)


def _create_network(engine: Engine, name: str, subnet: str | None, fixture: str, *,
                    exist_ok: bool = False) -> Network:
    from pytest_isobox.plugin.handles import Network

    if exist_ok:
        try:
            info = engine.network_inspect(name)
            return Network(info.name, info.id, info.subnet, info.gateway)
        except NetworkNotFound:
            pass
    info = engine.network_create(name, subnet=subnet, labels={FIXTURE_LABEL: fixture})
    return Network(info.name, info.id, info.subnet, info.gateway)


def _remove(action: Callable[[], None], missing: type[Exception], *, keeping: bool) -> None:
    """Remove a network or volume; one still used by a kept container stays."""
    try:
        action()
    except missing:
        pass
    except ConflictError:
        if not keeping:
            raise


def _caller_dir() -> Path:
    """The directory of the module calling the factory (the conftest.py or test module)."""
    frame = sys._getframe(2)
    filename = frame.f_globals.get("__file__")
    return Path(filename).resolve().parent if filename else Path.cwd()
