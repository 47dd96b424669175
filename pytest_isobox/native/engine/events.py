"""Events (capability "events"): the verbs of the other roles record what they changed in
the home's journal (native/events.py) once they succeeded, as dockerd names it. This role
comes first in NativeEngine's bases, so each verb here wraps the role's own.

A container's `die` is recorded by the process that sees the run end (`wait`, or `remove`
of a container that ran), with the time the run ended."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_isobox.engine import (
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    EngineEvent,
    NetworkInfo,
)


def _attributes(st: ContainerState, **extra: str) -> dict[str, str]:
    return {**st.labels, "image": st.image, "name": st.name, **extra}


class EventsRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    home: Path

    def _event(self, type_: str, action: str, id_: str, attributes: dict[str, str] | None = None,
               *, when: float = 0.0, key: str | None = None) -> None:
        from pytest_isobox.native import events

        events.record(self.home, EngineEvent(type_, action, id_, dict(attributes or {}), when),
                      key)

    def _container_event(self, action: str, container: str, **extra: str
                         ) -> ContainerState | None:
        """The event of a verb that succeeded; none when the container went meanwhile (an
        auto-removed one killed or stopped): its exit reports it."""
        try:
            st = self._brief_state(container)  # type: ignore[attr-defined]
        except ContainerNotFound:
            return None
        self._event("container", action, st.id, _attributes(st, **extra))
        return st

    def _died(self, st: ContainerState) -> None:
        """The `die` of `st`'s last run, once per run (a key readers deduplicate on)."""
        if st.status != "exited" or not st.started_at:
            return
        key = f"die:{st.id}:{st.started_at}"
        seen = self.__dict__.setdefault("_died_keys", set())
        if key in seen:
            return
        seen.add(key)
        self._event("container", "die", st.id,
                    _attributes(st, exitCode=str(st.exit_code if st.exit_code is not None
                                                 else 0)),
                    when=st.finished_at or 0.0, key=key)

    # what the journal holds
    def events(self, *, since: float | None = None, until: float | None = None,
               follow: bool = True) -> Iterator[EngineEvent | None]:
        from pytest_isobox.native import events

        return events.read(self.home, since=since, until=until, follow=follow)

    # containers
    def create(self, spec: ContainerSpec) -> ContainerState:
        st = super().create(spec)  # type: ignore[misc]
        self._event("container", "create", st.id, _attributes(st))
        return st

    def start(self, container: str) -> ContainerState:
        st = super().start(container)  # type: ignore[misc]
        self._event("container", "start", st.id, _attributes(st))
        return st

    def start_stream(self, container: str, **options: Any) -> Any:
        stream = super().start_stream(container, **options)  # type: ignore[misc]
        self._container_event("start", container)
        return stream

    def kill(self, container: str, signal: str = "SIGKILL") -> None:
        super().kill(container, signal)  # type: ignore[misc]
        self._container_event("kill", container, signal=signal.removeprefix("SIG"))

    def stop(self, container: str, timeout: float | None = None) -> None:
        super().stop(container, timeout)  # type: ignore[misc]
        with contextlib.suppress(ContainerNotFound):
            self._died(self._brief_state(container))  # type: ignore[attr-defined]
        self._container_event("stop", container)

    def wait(self, container: str, timeout: float | None = None) -> int:
        try:
            before = self._brief_state(container)  # type: ignore[attr-defined]
        except ContainerNotFound:  # gone already (auto-removed): the code stays known
            return super().wait(container, timeout)  # type: ignore[misc]
        code = super().wait(container, timeout)  # type: ignore[misc]
        if before.status != "exited":  # it ended while waited for: now
            before.status, before.exit_code, before.finished_at = "exited", code, 0.0
        self._died(before)
        destroyed = self.__dict__.setdefault("_destroyed", set())
        if not (Path(self.home) / "containers" / before.id).exists() \
                and before.id not in destroyed:  # auto-removed at exit, not by remove() here
            self._event("container", "destroy", before.id, _attributes(before))
        return code

    def remove(self, container: str, *, force: bool = False) -> None:
        before = self._brief_state(container)  # type: ignore[attr-defined]
        super().remove(container, force=force)  # type: ignore[misc]
        if before.started_at:
            if before.status == "running":  # killed by the removal: it ended now
                before.status, before.exit_code, before.finished_at = "exited", 137, 0.0
            self._died(before)
        self._event("container", "destroy", before.id, _attributes(before))
        self.__dict__.setdefault("_destroyed", set()).add(before.id)

    def rename(self, container: str, new_name: str) -> None:
        old = self._brief_state(container)  # type: ignore[attr-defined]
        super().rename(container, new_name)  # type: ignore[misc]
        self._container_event("rename", old.id, oldName="/" + old.name)

    def update(self, container: str, **changes: Any) -> None:
        super().update(container, **changes)  # type: ignore[misc]
        self._container_event("update", container)

    def pause(self, container: str) -> None:
        super().pause(container)  # type: ignore[misc]
        self._container_event("pause", container)

    def unpause(self, container: str) -> None:
        super().unpause(container)  # type: ignore[misc]
        self._container_event("unpause", container)

    # images
    def pull(self, ref: str, *args: Any, **kwargs: Any) -> str:
        image_id = super().pull(ref, *args, **kwargs)  # type: ignore[misc]
        self._event("image", "pull", ref, {"name": ref})
        return image_id

    def tag(self, ref: str, new_ref: str) -> None:
        super().tag(ref, new_ref)  # type: ignore[misc]
        image_id = super().image_inspect(new_ref).id  # type: ignore[misc]
        self._event("image", "tag", image_id, {"name": new_ref})

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        image_id = super().image_inspect(ref).id  # type: ignore[misc]
        super().remove_image(ref, force=force)  # type: ignore[misc]
        action = "delete" if ref.startswith("sha256:") or ref == image_id[7:19] else "untag"
        self._event("image", action, image_id, {"name": ref})

    def import_rootfs(self, source: str | Path, ref: str) -> str:
        image_id = super().import_rootfs(source, ref)  # type: ignore[misc]
        self._event("image", "import", image_id, {"name": ref})
        return image_id

    def load_images(self, path: str | Path) -> list[str]:
        loaded = super().load_images(path)  # type: ignore[misc]
        for name in loaded:
            self._event("image", "load", name, {"name": name})
        return loaded

    # networks and volumes
    def network_create(self, name: str, **options: Any) -> NetworkInfo:
        net = super().network_create(name, **options)  # type: ignore[misc]
        self._event("network", "create", net.id, {"name": name, "type": net.driver})
        return net

    def network_remove(self, name: str) -> None:
        net = super().network_inspect(name)  # type: ignore[misc]
        super().network_remove(name)  # type: ignore[misc]
        self._event("network", "destroy", net.id, {"name": net.name, "type": net.driver})

    def network_connect(self, network: str, container: str, **options: Any) -> None:
        super().network_connect(network, container, **options)  # type: ignore[misc]
        self._network_container_event("connect", network, container)

    def network_disconnect(self, network: str, container: str, **options: Any) -> None:
        super().network_disconnect(network, container, **options)  # type: ignore[misc]
        self._network_container_event("disconnect", network, container)

    def _network_container_event(self, action: str, network: str, container: str) -> None:
        net = super().network_inspect(network)  # type: ignore[misc]
        st = self._brief_state(container)  # type: ignore[attr-defined]
        self._event("network", action, net.id, {"name": net.name, "type": net.driver,
                                                "container": st.id})

    def volume_create(self, name: str, *args: Any, **kwargs: Any) -> str:
        created = super().volume_create(name, *args, **kwargs)  # type: ignore[misc]
        self._event("volume", "create", created or name, {"driver": "local"})
        return created

    def volume_remove(self, name: str, *, force: bool = False) -> None:
        super().volume_remove(name, force=force)  # type: ignore[misc]
        self._event("volume", "destroy", name, {"driver": "local"})
