"""The server's answers checked against moby's swagger.yaml (tests/data/moby, Apache-2.0):
the main endpoints' documents, each against its definition."""

from __future__ import annotations

import io
import time

import pytest

from tests.cli.swagger import errors
from tests.server.conftest import SERVE_IMAGE

docker = pytest.importorskip("docker")
pytest.importorskip("jsonschema")


def test_main_documents_fit_the_swagger_schema(served: str) -> None:
    client = docker.DockerClient(base_url=served, timeout=60)
    api = client.api
    found: dict[str, list[str]] = {}

    def check(document: object, definition: str, what: str) -> None:
        problems = errors(document, definition)
        if problems:
            found[what] = problems

    try:
        since = time.time()
        net = client.networks.create("swagger-net", labels={"k": "v"})
        vol = client.volumes.create("swagger-vol")
        created = api.create_container(SERVE_IMAGE, ["sleep", "300"], ports=[8080],
                                       host_config=api.create_host_config(
                                           port_bindings={8080: None}),
                                       networking_config=api.create_networking_config(
                                           {"swagger-net": api.create_endpoint_config(
                                               aliases=["sw"])}),
                                       labels={"suite": "swagger"})
        check(created, "ContainerCreateResponse", "POST /containers/create")
        cid = created["Id"]
        check(api.inspect_container(cid), "ContainerInspectResponse", "inspect (created)")
        api.start(cid)
        check(api.inspect_container(cid), "ContainerInspectResponse", "inspect (running)")
        for entry in api.containers(all=True):
            check(entry, "ContainerSummary", "GET /containers/json")
        check(api.top(cid), "ContainerTopResponse", "GET /containers/{id}/top")
        check(api.stats(cid, stream=False), "ContainerStatsResponse", "GET .../stats")
        exec_id = api.exec_create(cid, ["true"])["Id"]
        api.exec_start(exec_id)
        api.kill(cid)
        check(api.wait(cid), "ContainerWaitResponse", "POST /containers/{id}/wait")
        check(api.inspect_container(cid), "ContainerInspectResponse", "inspect (exited)")
        for image in api.images():
            check(image, "ImageSummary", "GET /images/json")
        check(api.inspect_image(SERVE_IMAGE), "ImageInspect", "GET /images/{name}/json")
        for item in api.history(SERVE_IMAGE):
            check(item, "ImageHistoryResponseItem", "GET /images/{name}/history")
        client.images.build(fileobj=io.BytesIO(f"FROM {SERVE_IMAGE}\n".encode()),
                            tag="swagger-built:1")
        for item in api.remove_image("swagger-built:1"):
            check(item, "ImageDeleteResponseItem", "DELETE /images/{name}")
        for entry in api.networks():
            check(entry, "NetworkSummary", "GET /networks")
        check(api.inspect_network(net.id), "NetworkInspect", "GET /networks/{id}")
        check(api.volumes(), "VolumeListResponse", "GET /volumes")
        check(api.inspect_volume(vol.name), "Volume", "GET /volumes/{name}")
        check(api.version(), "SystemVersion", "GET /version")
        check(api.info(), "SystemInfo", "GET /info")
        api.remove_container(cid)
        vol.remove()
        net.remove()
        events = list(api.events(since=since, until=time.time(), decode=True))
        assert events
        for event in events:
            check(event, "EventMessage", "GET /events")
    finally:
        client.close()
    assert found == {}
