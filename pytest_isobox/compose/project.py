"""A compose project run on an engine: up (networks, volumes, images built or pulled, services
started in depends_on order, each waiting for the conditions it names), down, ps, logs, exec,
build. Containers, networks and volumes carry the project's label, so `down` in another
process finds them as `docker compose down` does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pytest_isobox.compose import ComposeError
from pytest_isobox.compose.model import (
    CONFIG_HASH_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    Project,
    Service,
    anonymous_volumes,
    container_spec,
)

if TYPE_CHECKING:
    from pytest_isobox.engine import ContainerSpec, ContainerState, Engine


class ServiceFailed(ComposeError):
    """A service did not reach the condition another one depends on (or `up --wait` asked)."""


class ComposeRun:
    """One project on one engine. `persistent` False: containers die with this process
    (the fixture's); `announce` receives one line per step (the CLI prints them)."""

    def __init__(self, engine: Engine, project: Project, *, persistent: bool = True,
                 announce: Callable[[str], None] | None = None,
                 adopt: Callable[[ContainerSpec], bool] | None = None) -> None:
        """`adopt` (the plugin's --isobox-reuse) is asked before a service's container is
        made: True when an earlier run's container of that name has the same configuration
        (it is running again); it removes one that differs, and labels the spec."""
        self.engine = engine
        self.project = project
        self.persistent = persistent
        self.announce = announce or (lambda line: None)
        self.adopt = adopt
        self.adopted: set[str] = set()
        self.states: dict[str, ContainerState] = {}
        self.specs: dict[str, ContainerSpec] = {}
        self.start_seconds: dict[str, float] = {}
        self.healthy: set[str] = set()

    # ------------------------------------------------------------------ up
    def up(self, services: Iterable[str] | None = None, *, build: bool = False,
           wait: bool = False, timeout: float = 120.0) -> dict[str, ContainerState]:
        """Start the services (default: all active) and what they depend on. With `wait`,
        every started service that has a healthcheck is also waited healthy."""
        order = self.project.order(list(services) if services else None)
        self._networks()
        self._volumes(order)
        self.build([name for name in order if self.project.services[name].build],
                   only_missing=not build)
        for name in order:
            service = self.project.services[name]
            for dep, condition in service.depends_on.items():
                self.wait_condition(dep, condition, timeout, needed_by=name)
            self._start(service)
        if wait:
            for name in order:
                if self.has_healthcheck(name):
                    self.wait_condition(name, "service_healthy", timeout)
        return dict(self.states)

    def _networks(self) -> None:
        """The project's networks; persistent ones (up -d, reuse, shared, kept) outlive this
        process as the containers on them do, else an owner's sweep takes them."""
        from pytest_isobox.engine import PERSISTENT_LABEL, ConflictError, NetworkNotFound

        for net in self.project.networks.values():
            if net.external:
                try:
                    self.engine.network_inspect(net.name)
                except NetworkNotFound:
                    raise ComposeError(f"networks.{net.key}: external network {net.name!r} "
                                       "not found") from None
                continue
            labels = {**net.labels, PROJECT_LABEL: self.project.name}
            if self.persistent:
                labels[PERSISTENT_LABEL] = "1"
            with contextlib.suppress(ConflictError):
                self.engine.network_create(net.name, labels=labels)
                self.announce(f"network {net.name} created")

    def _volumes(self, order: list[str]) -> None:
        from pytest_isobox.engine import ConflictError

        names = [v.name for v in self.project.volumes.values() if not v.external]
        for service in order:
            names += anonymous_volumes(self.project, self.project.services[service])
        existing = set(self.engine.volumes())
        for name in names:
            if name in existing:
                continue
            with contextlib.suppress(ConflictError):
                self.engine.volume_create(name)
                self.announce(f"volume {name} created")

    def build(self, services: Iterable[str] | None = None, *, only_missing: bool = False
              ) -> None:
        """Build the services that have `build:` (tagged with their image name)."""
        from pytest_isobox.engine import ImageNotFound, require

        for name in services if services is not None else self.project.services:
            service = self.project.services[name]
            if service.build is None:
                continue
            ref = service.image_ref(self.project.name)
            if only_missing:
                try:
                    self.engine.image_inspect(ref)
                    continue
                except ImageNotFound:
                    pass
            require(self.engine, "build", f"services.{name}.build")
            self.announce(f"building {name} ({ref})")
            self.engine.build(service.build.context, dockerfile=service.build.dockerfile,
                              tag=ref, buildargs=service.build.args, target=service.build.target)

    def _start(self, service: Service) -> None:
        """The service's container: kept when one of its name runs with the same
        configuration and image (compose's config hash), else (re)created."""
        from pytest_isobox.engine import ContainerNotFound, ImageNotFound

        spec = container_spec(self.project, service, persistent=self.persistent)
        self.specs[service.name] = spec
        ensure = getattr(self.engine, "ensure_image", None)  # pulled when missing
        if ensure is not None:
            ensure(spec.image)
        try:
            image_id = self.engine.image_inspect(spec.image).id
        except ImageNotFound:  # an engine that pulls at run
            image_id = ""
        spec.labels[CONFIG_HASH_LABEL] = config_hash(spec, image_id)
        if self.adopt is not None and self.adopt(spec):
            self.states[service.name] = self.engine.state(str(spec.name))
            self.adopted.add(service.name)
            self.announce(f"service {service.name} reused ({spec.name})")
            return
        try:
            state = self.engine.state(str(spec.name))
        except ContainerNotFound:
            state = None
        if state is not None and state.running and \
                state.labels.get(CONFIG_HASH_LABEL) == spec.labels[CONFIG_HASH_LABEL]:
            self.states[service.name] = state
            self.announce(f"service {service.name} up to date ({spec.name})")
            return
        if state is not None:
            self.engine.remove(state.id, force=True)
            self.announce(f"service {service.name} recreated: its configuration or image "
                          "changed" if state.running else f"service {service.name} replaced")
        self.healthy.discard(service.name)
        started = time.monotonic()
        self.states[service.name] = self.engine.run(spec)
        self.start_seconds[service.name] = time.monotonic() - started
        self.announce(f"service {service.name} started ({spec.name})")

    # ------------------------------------------------------------------ conditions
    def wait_condition(self, name: str, condition: str, timeout: float,
                       needed_by: str | None = None) -> None:
        state = self.states.get(name)
        if state is None:
            raise ServiceFailed(f"service {name} was not started")
        why = f" (needed by {needed_by})" if needed_by else ""
        if condition == "service_started":
            return
        if condition == "service_completed_successfully":
            try:
                code = self.engine.wait(state.id, timeout)
            except TimeoutError:
                raise ServiceFailed(f"service {name} did not complete within {timeout:g}s"
                                    f"{why}") from None
            if code != 0:
                raise ServiceFailed(f"service {name} exited with {code}{why}: "
                                    f"{self._tail(state.id)}")
            return
        self.wait_healthy(name, timeout, why)

    def has_healthcheck(self, name: str) -> bool:
        """The service's own healthcheck, or else its image's HEALTHCHECK (compose's rule)."""
        from pytest_isobox.engine import ImageNotFound

        service = self.project.services[name]
        if service.own_healthcheck is not None:
            return service.own_healthcheck
        try:
            config = self.engine.image_inspect(service.image_ref(self.project.name)).config
        except ImageNotFound:
            return False
        test = (config.get("config", config).get("Healthcheck") or {}).get("Test") or []
        return bool(test) and test[0] != "NONE"

    def health(self, container: str) -> dict:
        """State.Health as the engine keeps it (native: the keeper; docker: the daemon)."""
        return (self.engine.inspect(container).get("State") or {}).get("Health") or {}

    def wait_healthy(self, name: str, timeout: float, why: str = "") -> None:
        """Until the container's State.Health is healthy: the engine runs the healthcheck
        stored in the container at its interval (retries, start period, timeout as Docker
        counts them); unhealthy, or an exit, fails at once, as compose's depends_on does."""
        if name in self.healthy:
            return
        if not self.has_healthcheck(name):
            raise ServiceFailed(f"services.{name}: service_healthy needs a healthcheck (the "
                                f"service's or its image's){why}")
        state = self.states[name]
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            health = self.health(state.id)
            status = health.get("Status") or "starting"
            if status == "healthy":
                self.healthy.add(name)
                self.announce(f"service {name} healthy")
                return
            if status == "unhealthy":
                raise ServiceFailed(f"service {name} is unhealthy after "
                                    f"{health.get('FailingStreak', 0)} failed checks{why}: "
                                    f"last output: {_last_output(health)}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServiceFailed(f"service {name} not healthy within {timeout:g}s{why} "
                                    f"(health: {status}): last output: {_last_output(health)}")
            try:  # the pause between looks, cut short when the container exits
                code = self.engine.wait(state.id, min(pause, left))
            except TimeoutError:
                pause = min(pause * 1.5, 0.25)
                continue
            raise ServiceFailed(f"service {name} exited with {code} before it was healthy"
                                f"{why}: {self._tail(state.id)}")

    def _tail(self, container: str) -> str:
        try:
            pieces = self.engine.logs(container, tail=5)
        except Exception:  # noqa: BLE001
            return "(no logs)"
        text = b"".join(data for _, data in pieces).decode("utf-8", "replace").strip()
        return " | ".join(text.splitlines()[-5:]) or "(no output)"

    # ------------------------------------------------------------------ the rest
    def containers(self) -> list[ContainerState]:
        """The project's containers (by label), in service order."""
        mine = [c for c in self.engine.containers(all=True)
                if c.labels.get(PROJECT_LABEL) == self.project.name]
        rank = {name: index for index, name in enumerate(self.project.services)}
        return sorted(mine, key=lambda c: (rank.get(c.labels.get(SERVICE_LABEL, ""), 1 << 30),
                                           c.name))

    def container_of(self, service: str) -> ContainerState:
        for state in self.containers():
            if state.labels.get(SERVICE_LABEL) == service:
                return state
        known = ", ".join(self.project.services)
        if service not in self.project.services:
            raise ComposeError(f"no service {service!r} (services: {known})")
        raise ComposeError(f"service {service} has no container (is the project up?)")

    def down(self, *, volumes: bool = False, local_images: bool = False,
             timeout: float | None = None) -> None:
        """Stop and remove the containers, then the networks; with `volumes`, the named and
        anonymous volumes too; with `local_images`, the images built for services that name
        no `image:` (compose's `--rmi local`). Whatever fails, the rest is still removed; the
        first error is raised at the end."""
        from pytest_isobox.engine import (
            ContainerNotFound,
            ImageNotFound,
            NetworkNotFound,
            VolumeNotFound,
        )

        errors: list[Exception] = []

        def attempt(action: Callable[[], None], missing: type[Exception]) -> None:
            try:
                action()
            except missing:
                pass
            except Exception as exc:  # noqa: BLE001 - collected, first one raised
                errors.append(exc)

        states = self.containers()
        for state in reversed(states):
            attempt(lambda s=state: self.engine.stop(s.id, timeout), ContainerNotFound)
            attempt(lambda s=state: self.engine.remove(s.id, force=True), ContainerNotFound)
        for net in self.project.networks.values():
            if not net.external:
                attempt(lambda n=net.name: self.engine.network_remove(n), NetworkNotFound)
        if volumes:
            names = [v.name for v in self.project.volumes.values() if not v.external]
            for service in self.project.services.values():
                names += anonymous_volumes(self.project, service)
            for name in names:
                attempt(lambda n=name: self.engine.volume_remove(n, force=True),
                        VolumeNotFound)
        if local_images:
            for service in self.project.services.values():
                if service.build is not None and service.image is None:
                    ref = service.image_ref(self.project.name)
                    attempt(lambda r=ref: self.engine.remove_image(r, force=True),
                            ImageNotFound)
        self.states.clear()
        self.healthy.clear()
        if errors:
            raise errors[0]

    def removal_record(self) -> dict[str, object]:
        """What `down -v --rmi local` would remove, as plain data: another process (the last
        xdist worker of a shared project) takes it down from this with `remove_recorded`."""
        volumes = [v.name for v in self.project.volumes.values() if not v.external]
        for service in self.project.services.values():
            volumes += anonymous_volumes(self.project, service)
        return {"id": self.project.name,
                "networks": [n.name for n in self.project.networks.values() if not n.external],
                "volumes": volumes,
                "images": [s.image_ref(self.project.name) for s in self.project.services.values()
                           if s.build is not None and s.image is None]}

    def logs(self, service: str, *, tail: int | None = None) -> str:
        state = self.container_of(service)
        pieces = self.engine.logs(state.id, tail=tail)
        return b"".join(data for _, data in pieces).decode("utf-8", "replace")

    def exec(self, service: str, argv: list[str]) -> tuple[int, bytes]:
        result = self.engine.exec(self.container_of(service).id, argv)
        return result.exit_code, result.output


def _last_output(health: dict) -> str:
    """The last probe's output, one line (Docker keeps the last five in State.Health.Log)."""
    entries = health.get("Log") or []
    if not entries:
        return "(no check finished yet)"
    text = str(entries[-1].get("Output") or "").strip()
    return f"exit {entries[-1].get('ExitCode')}: " + (" | ".join(text.splitlines()[-3:])
                                                      or "(no output)")


def remove_recorded(engine: Engine, record: dict) -> None:
    """Take down a project from its `removal_record`: its labelled containers, then its
    networks, volumes and built images; what is gone already is skipped."""
    from pytest_isobox.engine import (
        ConflictError,
        ContainerNotFound,
        ImageNotFound,
        NetworkNotFound,
        VolumeNotFound,
    )

    for state in engine.containers(all=True):
        if state.labels.get(PROJECT_LABEL) == record["id"]:
            with contextlib.suppress(ContainerNotFound):
                engine.remove(state.id, force=True)
    for name in record.get("networks", []):
        with contextlib.suppress(NetworkNotFound, ConflictError):
            engine.network_remove(name)
    for name in record.get("volumes", []):
        with contextlib.suppress(VolumeNotFound):
            engine.volume_remove(name, force=True)
    for ref in record.get("images", []):
        with contextlib.suppress(ImageNotFound, ConflictError):
            engine.remove_image(ref, force=True)


def config_hash(spec: ContainerSpec, image_id: str) -> str:
    """A digest of the service's container as specified and of its image: `up` recreates a
    running container whose label differs (compose's com.docker.compose.config-hash)."""
    import hashlib
    import json

    from pytest_isobox.engine.records import as_dict

    doc = as_dict(spec)
    doc["labels"] = {k: v for k, v in doc["labels"].items() if k != CONFIG_HASH_LABEL}
    doc["image_id"] = image_id
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
