"""The `compose()` fixture factory: a compose file's services as one fixture.

    stack = compose("docker-compose.yml", profiles=["test"], env_file=".env.test")

    def test_api(stack):
        host, port = stack["web"].get_addr("8000/tcp")

The value maps each service to a `Container` handle (get_addr, logs, exec, ...), ready: the
services with a healthcheck healthy, the others with their published ports accepting
connections (as `container()` waits). Containers are recorded, kept and reported like
`container()`'s; networks and volumes of the project are removed after the scope.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.plugin.fixtures import SCOPES, FixtureMeta, _caller_dir, _make_fixture

if TYPE_CHECKING:
    import pytest

    from pytest_isobox.compose.model import Project
    from pytest_isobox.compose.project import ComposeRun
    from pytest_isobox.plugin.handles import Container
    from pytest_isobox.plugin.session import IsoboxSession


class Stack(Mapping[str, "Container"]):
    """Service name -> Container, plus the project and its run."""

    def __init__(self, project: Project, run: ComposeRun, containers: dict[str, Container]
                 ) -> None:
        self.project = project
        self.run = run
        self._containers = containers

    def __getitem__(self, service: str) -> Container:
        try:
            return self._containers[service]
        except KeyError:
            raise KeyError(f"no service {service!r} in compose project {self.project.name} "
                           f"(services: {', '.join(self._containers)})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._containers)

    def __len__(self) -> int:
        return len(self._containers)

    @property
    def containers(self) -> list[Container]:
        return list(self._containers.values())

    def __repr__(self) -> str:
        return f"<Stack {self.project.name}: {', '.join(self._containers)}>"


def compose(*files: str, profiles: Sequence[str] = (), env_file: str | Sequence[str] | None
            = None, scope: str = "session", project_name: str | None = None,
            services: Sequence[str] | None = None, build: bool = False,
            timeout: float | None = None, shared: bool = False) -> Any:
    """A fixture giving a `Stack` of a compose project's started, ready services.

    `files` (default compose.yaml & co.) and `env_file` are relative to the calling module;
    `build=True` rebuilds images that exist already; `services` starts only those (and
    what they depend on). The file is read and checked at the first use, not at import.
    As for `container()`: `shared=True` (session scope) brings the project up once for all
    xdist workers; under --isobox-reuse a session-scoped project keeps a stable name, its
    containers are adopted when their configuration is unchanged and left running.
    """
    if scope not in SCOPES:
        raise InvalidSpec(f"compose(scope={scope!r}): expected one of {', '.join(SCOPES)}")
    if shared and scope != "session":
        raise InvalidSpec(f"compose(shared=True) needs scope='session', not {scope!r}")
    base = _caller_dir()
    env_files = [env_file] if isinstance(env_file, str) else env_file

    def produce(request: pytest.FixtureRequest, session: IsoboxSession,
                values: dict[str, Any]) -> Generator[Stack]:
        from pytest_isobox.compose.model import load_project
        from pytest_isobox.compose.project import ComposeRun

        reuse = scope == "session" and session.settings.reuse
        sharing = shared and session.worker_count > 1
        name = project_name or session.resource_name(request.fixturename, shared=shared,
                                                     stable=reuse)
        project = load_project(list(files) or None, project_name=name, profiles=profiles,
                               env_files=env_files, cwd=base)
        engine = session.shared_engine() if sharing else session.engine()
        keep = session.settings.keep != "never"
        run = ComposeRun(engine, project, persistent=keep or reuse or sharing,
                         announce=session.announce,
                         adopt=(lambda spec: session._reusable(engine, spec) is not None)
                         if reuse else None)
        launch = _Launch(session, run, request.fixturename, services, build,
                         timeout or session.settings.timeout, how="shared" if sharing else None)
        if sharing:
            yield from _shared_stack(launch)
            return
        try:
            yield launch.up()
        finally:
            kept = [session.dispose(c) for c in launch.containers.values()]
            kept += [r.kept for r in launch.records]
            if not any(kept) and not reuse:  # images built under this run's name go too
                run.down(volumes=True, local_images=project_name is None)

    return _make_fixture(FixtureMeta("compose", shared), scope, set(), produce)


class _Launch:
    """One fixture instance's project brought up: the services started in depends_on order,
    then each recorded and waited for as `container()`'s are (its healthcheck's State.Health
    when it has one, else its published ports)."""

    def __init__(self, session: IsoboxSession, run: ComposeRun, fixture: str,
                 services: Sequence[str] | None, build: bool, timeout: float,
                 how: str | None) -> None:
        self.session, self.run, self.fixture = session, run, fixture
        self.services, self.build, self.timeout, self.how = services, build, timeout, how
        self.containers: dict[str, Container] = {}
        self.records: list[Any] = []

    def up(self) -> Stack:
        run = self.run
        for service in run.project.services.values():  # made by this worker, run elsewhere
            self.session._carry_image(run.engine, service.image_ref(run.project.name))
        run.up(self.services, build=self.build, timeout=self.timeout)
        for name, state in run.states.items():
            self._track(name, state)
        return Stack(run.project, run, self.containers)

    def attach(self) -> Stack:
        """The project another worker brought up: a handle on each of its containers."""
        from pytest_isobox.compose.model import container_spec
        from pytest_isobox.plugin.handles import Container

        run = self.run
        for name in run.project.order(list(self.services) if self.services else None):
            state = run.container_of(name)
            spec = container_spec(run.project, run.project.services[name], persistent=True)
            container = Container(run.engine, state, spec, fixture=f"{self.fixture}[{name}]",
                                  network_names=self._network_names())
            self.session.config.hook.pytest_isobox_container_created(container=container)
            self.containers[name] = container
        return Stack(run.project, run, self.containers)

    def _network_names(self) -> dict[str, str]:
        return {key: net.name for key, net in self.run.project.networks.items()}

    def _track(self, service: str, state: Any) -> None:
        from pytest_isobox.plugin import wait
        from pytest_isobox.plugin.handles import Container
        from pytest_isobox.plugin.reports import ContainerRecord

        run, session = self.run, self.session
        spec = run.specs[service]
        label = f"{self.fixture}[{service}]"
        container = Container(run.engine, state, spec, fixture=label,
                              network_names=self._network_names())
        record = ContainerRecord(label, str(spec.name), "", spec.image, session.worker_id)
        record.start_seconds = run.start_seconds.get(service, 0.0)
        if self.how is not None:
            record.how = self.how
        elif run.adopt is not None:
            record.how = "reused" if service in run.adopted else "reusable"
        self.records.append(record)
        ready = wait.healthy() if run.has_healthcheck(service) else None
        session._track(container, record, ready, self.timeout)
        self.containers[service] = container


def _shared_stack(launch: _Launch) -> Generator[Stack]:
    """One project for every xdist worker (SharedRegistry, as shared `container()`s): the
    first worker to need it brings it up under the run's lock, the others attach; the last
    worker to leave takes it down (what to remove is recorded with it)."""
    from pytest_isobox.plugin.sharing import SharedRegistry

    started: list[Stack] = []

    def start() -> dict[str, Any]:
        try:
            started.append(launch.up())
        except BaseException:
            launch.run.down(volumes=True)
            raise
        return launch.run.removal_record()

    SharedRegistry.of(launch.session).acquire(f"compose:{launch.fixture}", start)
    stack = started[0] if started else launch.attach()
    yield stack
    for container in stack.containers:
        launch.session.record_stats(container)


__all__ = ["Stack", "compose"]
