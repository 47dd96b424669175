"""What the `isobox` fixture (registered by plugin.py) gives: start containers and build images from inside a test.

Everything made through it is removed when the test ends, newest first, even if it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_isobox.engine import ContainerNotFound, Engine, NetworkNotFound, VolumeNotFound
from pytest_isobox.plugin import wait
from pytest_isobox.plugin.container_options import FIXTURE_LABEL, ContainerOptions
from pytest_isobox.plugin.handles import Container, Image, Network, Volume
from pytest_isobox.plugin.session import IsoboxSession


class Isobox:
    """Imperative access to the run's engine for one test."""

    def __init__(self, session: IsoboxSession, request: pytest.FixtureRequest) -> None:
        self.session = session
        self.request = request
        self.containers: list[Container] = []
        self._cleanups: list[Callable[[], None]] = []

    @property
    def engine(self) -> Engine:
        return self.session.engine()

    def run(self, image: str | Image, command: str | Sequence[str] | None = None, *,
            ready: wait.Strategy | bool | None = None, timeout: float | None = None,
            name: str | None = None, **options: Any) -> Container:
        """Start a container (options as for `container()`); wait only when told to or when
        ports are published, so a one-shot command may exit: use `Container.wait()`."""
        opts = ContainerOptions(image=str(image), command=command, **options)
        if ready is None and not opts.ports:
            ready = False
        handle = self.session.launch(opts, fixture="isobox", name=name, ready=ready,
                                     timeout=timeout, base=self.request.config.rootpath)
        self.containers.append(handle)
        self._cleanups.append(lambda: self.session.dispose(handle))
        return handle

    def build(self, path: str | Path, *, dockerfile: str | None = None,
              buildargs: dict[str, str] | None = None, target: str | None = None,
              tag: str | None = None) -> Image:
        """Build an image (relative paths from the rootdir); cached like `image()`."""
        context = self.request.config.rootpath / path
        return self.session.build_image(context, dockerfile=dockerfile, buildargs=buildargs,
                                        target=target, tag=tag, source=str(path))

    def network(self, name: str | None = None, *, subnet: str | None = None) -> Network:
        engine = self.engine
        info = engine.network_create(name or self.session.resource_name("isobox-net"),
                                     subnet=subnet, labels={FIXTURE_LABEL: "isobox"})
        self._cleanups.append(lambda: _ignore(NetworkNotFound, engine.network_remove, info.name))
        return Network(info.name, info.id, info.subnet, info.gateway)

    def volume(self, name: str | None = None) -> Volume:
        engine = self.engine
        vol = engine.volume_create(name or self.session.resource_name("isobox-vol")) or name
        self._cleanups.append(lambda: _ignore(VolumeNotFound, engine.volume_remove, vol,
                                              force=True))
        return Volume(str(vol))

    def close(self) -> None:
        """Remove everything, newest first; the first error is raised after all were tried."""
        errors = []
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except ContainerNotFound:
                pass
            except Exception as exc:  # noqa: BLE001 - finish cleaning up, then report
                errors.append(exc)
        if errors:
            raise errors[0]


def _ignore(missing: type[Exception], action: Callable[..., None], *args: Any,
            **kwargs: Any) -> None:
    try:
        action(*args, **kwargs)
    except missing:
        pass
