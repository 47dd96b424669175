"""The docker engine's events: the daemon's /events through the seam."""

from __future__ import annotations

import secrets
import time

from tests.docker.conftest import podman_differs


@podman_differs("its /events has no network create and destroy events")
def test_docker_engine_events_since_until(docker_engine) -> None:
    name = f"isobox-events-{secrets.token_hex(4)}"
    since = time.time()
    docker_engine.network_create(name)
    docker_engine.network_remove(name)
    until = time.time()
    mine = [(e.type, e.action) for e in docker_engine.events(since=since, until=until,
                                                             follow=False)
            if e is not None and e.attributes.get("name") == name]
    assert mine == [("network", "create"), ("network", "destroy")]
    assert {"events", "streams"} <= docker_engine.capabilities
