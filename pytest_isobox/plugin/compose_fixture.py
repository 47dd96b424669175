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
            timeout: float | None = None) -> Any:
    """A fixture giving a `Stack` of a compose project's started, ready services.

    `files` (default compose.yaml & co.) and `env_file` are relative to the calling module;
    `build=True` rebuilds images that exist already; `services` starts only those (and
    what they depend on). The file is read and checked at the first use, not at import.
    """
    if scope not in SCOPES:
        raise InvalidSpec(f"compose(scope={scope!r}): expected one of {', '.join(SCOPES)}")
    base = _caller_dir()
    env_files = [env_file] if isinstance(env_file, str) else env_file

    def produce(request: pytest.FixtureRequest, session: IsoboxSession,
                values: dict[str, Any]) -> Generator[Stack]:
        from pytest_isobox.compose.model import load_project
        from pytest_isobox.compose.project import ComposeRun

        project = load_project(list(files) or None, project_name=project_name or
                               session.resource_name(request.fixturename),
                               profiles=profiles, env_files=env_files, cwd=base)
        keep = session.settings.keep != "never"
        run = ComposeRun(session.engine(), project, persistent=keep, announce=session.announce)
        containers: dict[str, Container] = {}
        try:
            run.up(services, build=build, wait=True,
                   timeout=timeout or session.settings.timeout)
            for name, state in run.states.items():
                containers[name] = _track(session, run, request.fixturename, name, state,
                                          timeout)
            yield Stack(project, run, containers)
        finally:
            kept = [session.dispose(c) for c in containers.values()]
            if not any(kept):  # images built under this run's project name go too
                run.down(volumes=True, local_images=project_name is None)

    return _make_fixture(FixtureMeta("compose"), scope, set(), produce)


def _track(session: IsoboxSession, run: ComposeRun, fixture: str, service: str,
           state: Any, timeout: float | None) -> Container:
    """One service's container recorded and waited for as `container()`'s are."""
    from pytest_isobox.plugin.handles import Container
    from pytest_isobox.plugin.reports import ContainerRecord

    spec = run.specs[service]
    nets = {key: net.name for key, net in run.project.networks.items()}
    label = f"{fixture}[{service}]"
    container = Container(run.engine, state, spec, fixture=label, network_names=nets)
    record = ContainerRecord(label, str(spec.name), "", spec.image, session.worker_id)
    record.start_seconds = 0.0
    has_check = run.project.services[service].healthcheck is not None  # waited by up()
    session._track(container, record, False if has_check else None, timeout)
    return container


__all__ = ["Stack", "compose"]
