"""The docker engine's update: the daemon's /containers/{id}/update through the seam."""

from __future__ import annotations

from pytest_isobox.engine import ContainerSpec, RestartPolicy
from tests.docker.conftest import podman_differs


@podman_differs("its Docker-compatible API has no POST /containers/{id}/update (404)")
def test_docker_engine_update(docker_engine, busybox_image: str) -> None:
    st = docker_engine.run(ContainerSpec(image=busybox_image, command=["sleep", "300"],
                                         mem_limit=64 << 20))
    try:
        docker_engine.update(st.id, mem_limit=96 << 20, pids_limit=40,
                             restart=RestartPolicy("on-failure", 2))
        host = docker_engine.inspect(st.id)["HostConfig"]
        assert (host["Memory"], host["PidsLimit"]) == (96 << 20, 40)
        assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    finally:
        docker_engine.remove(st.id, force=True)
