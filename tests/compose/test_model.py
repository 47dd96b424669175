"""The typed model: refused keys by name, references checked, and services mapped to the
seam's ContainerSpec through dockerargs. Pure logic: no engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_isobox.compose import ComposeError
from pytest_isobox.compose.model import container_spec, load_project, parse_duration
from pytest_isobox.engine.specs import (
    HealthcheckSpec,
    MountSpec,
    NetworkAttachment,
    PortSpec,
)

FULL = """
name: Demo_1
services:
  web:
    build: {context: ., args: {A: "1"}, target: serve}
    ports: ["8080", "127.0.0.1:9000:90/udp", {target: 91, published: "9091"}]
    expose: ["80"]
    environment: [X=1, FROMENV]
    env_file: web.env
    volumes: [data:/data, /anon, ./conf:/conf:ro, {type: tmpfs, target: /t, tmpfs: {size: 1m}}]
    tmpfs: [/run]
    networks: {back: {aliases: [www]}}
    healthcheck: {test: "wget -q -O- localhost/health", interval: 1s, retries: 5}
    deploy: {resources: {limits: {memory: 64m, cpus: "0.5", pids: 50}}}
    working_dir: /srv
    user: "1000"
    labels: {team: a}
  client:
    image: busybox
    command: sh -c 'echo hi'
    entrypoint: [/bin/env]
    depends_on: {web: {condition: service_healthy}}
    profiles: [test]
    mem_limit: 32m
    pids_limit: 10
networks: {back: {}}
volumes: {data: {}}
"""


def _project(tmp_path: Path, text: str, **kwargs):
    (tmp_path / "compose.yaml").write_text(text)
    (tmp_path / "web.env").write_text("FROMFILE=f\nX=0\n")
    kwargs.setdefault("environ", {"FROMENV": "e"})
    return load_project(cwd=tmp_path, **kwargs)


def test_services_become_container_specs(tmp_path: Path) -> None:
    project = _project(tmp_path, FULL, profiles=["test"])
    assert project.name == "demo_1"
    assert project.order() == ["web", "client"]
    web = container_spec(project, project.services["web"])
    assert web.image == "demo_1-web" and web.name == "demo_1-web-1"
    assert web.env == {"FROMFILE": "f", "X": "1", "FROMENV": "e"}
    assert web.ports == [PortSpec(8080), PortSpec(90, "udp", "127.0.0.1", 9000),
                         PortSpec(91, host_port=9091)]
    assert web.mounts == [
        MountSpec("volume", "/data", "demo_1_data"),
        MountSpec("volume", "/anon", "demo_1_web_anon1"),
        MountSpec("bind", "/conf", str((tmp_path / "conf").resolve()), True),
        MountSpec("tmpfs", "/t", size=1024 * 1024),
        MountSpec("tmpfs", "/run"),
    ]
    assert web.networks == [NetworkAttachment("demo_1_back", ("web", "www"))]
    assert (web.mem_limit, web.cpus, web.pids_limit) == (64 * 1024**2, 0.5, 50)
    assert (web.working_dir, web.user, web.labels["team"]) == ("/srv", "1000", "a")
    assert web.labels["com.docker.compose.service"] == "web"
    build = project.services["web"].build
    assert build is not None and build.context == tmp_path.resolve()
    assert (build.args, build.target) == ({"A": "1"}, "serve")
    assert web.healthcheck == HealthcheckSpec(("CMD-SHELL", "wget -q -O- localhost/health"),
                                              interval=1.0, retries=5)
    client = container_spec(project, project.services["client"])
    assert client.command == ["sh", "-c", "echo hi"] and client.entrypoint == ["/bin/env"]
    assert client.networks == [NetworkAttachment("demo_1_default", ("client",))]
    assert (client.mem_limit, client.pids_limit) == (32 * 1024**2, 10)
    assert project.services["client"].depends_on == {"web": "service_healthy"}


def test_profiles_leave_services_out(tmp_path: Path) -> None:
    assert list(_project(tmp_path, FULL).services) == ["web"]


@pytest.mark.parametrize(("text", "message"), [
    ("services:\n  web:\n    image: x\n    pid: host\n",
     r"services.web.pid: not supported by isobox compose$"),
    ("services:\n  web:\n    image: x\n    deploy: {replicas: 2}\n",
     r"services.web.deploy.replicas: not supported by isobox compose$"),
    ("services:\n  web:\n    image: x\nsecrets: {s: {file: ./s}}\n",
     r"secrets: not supported by isobox compose$"),
    ("services:\n  web:\n    image: x\n    depends_on: [db]\n",
     r"services.web.depends_on: service 'db' is not defined$"),
    ("services:\n  web:\n    image: x\n    networks: [nope]\n",
     r"services.web.networks: network 'nope' is not declared"),
    ("services:\n  web:\n    image: x\n    volumes: [nope:/x]\n",
     r"services.web.volumes\[0\]: volume 'nope' is not declared"),
    ("services:\n  web:\n    image: x\n    ports: ['99999:80']\n",
     r"services.web.ports\[0\]: invalid port '99999:80'"),
    ("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n",
     r"services.a.depends_on: circular: a -> b -> a$"),
    ("services:\n  web:\n    build: {context: ., ssh: [default]}\n",
     r"services.web.build.ssh: not supported by isobox compose$"),
    ("services:\n  web: {}\n", r"services.web: needs image or build$"),
])
def test_refused_and_broken(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ComposeError, match=r"compose.yaml: " + message) as info:
        _project(tmp_path, text)
    assert "\n" not in str(info.value)


def test_durations() -> None:
    assert parse_duration("1m30s", "k") == 90
    assert parse_duration("500ms", "k") == 0.5
    with pytest.raises(ComposeError, match=r"^k: invalid duration '5 sec'"):
        parse_duration("5 sec", "k")


@pytest.mark.parametrize(("healthcheck", "expected", "own"), [
    ("{test: [CMD, probe, -q], interval: 2s, timeout: 1s, retries: 4, start_period: 1m}",
     HealthcheckSpec(("CMD", "probe", "-q"), 2.0, 1.0, 4, 60.0), True),
    ("{test: [NONE]}", HealthcheckSpec(("NONE",)), False),
    ("{disable: true}", HealthcheckSpec(("NONE",)), False),
    ("{interval: 5s}", HealthcheckSpec((), interval=5.0), None),  # the image's test, every 5s
])
def test_healthcheck_is_stored_in_the_spec(tmp_path: Path, healthcheck: str,
                                           expected: HealthcheckSpec, own: bool | None) -> None:
    project = _project(tmp_path, f"services:\n  web:\n    image: x\n"
                                 f"    healthcheck: {healthcheck}\n")
    service = project.services["web"]
    assert container_spec(project, service).healthcheck == expected
    assert service.own_healthcheck is own


def test_port_ranges(tmp_path: Path) -> None:
    project = _project(tmp_path, "services:\n  web:\n    image: x\n    ports: ["
                                 "'8000-8001:8000-8001', '9000-9001/udp', "
                                 "'127.0.0.1:7000-7001:6000-6001', "
                                 "{target: 5000, published: '5005', host_ip: 127.0.0.2}]\n")
    assert container_spec(project, project.services["web"]).ports == [
        PortSpec(8000, host_port=8000), PortSpec(8001, host_port=8001),
        PortSpec(9000, "udp"), PortSpec(9001, "udp"),
        PortSpec(6000, host_port=7000), PortSpec(6001, host_port=7001),
        PortSpec(5000, host_ip="127.0.0.2", host_port=5005)]


@pytest.mark.parametrize(("ports", "message"), [
    ("['8000-8002:8000-8001']", (r"\[0\]: invalid port '8000-8002:8000-8001': host range "
                                r"8000-8002 and container range 8000-8001 differ in length$")),
    ("['5000-5010:5000']", r"\[0\]: invalid port '5000-5010:5000': host range"),
    ("['80', '9001-9000']", r"\[1\]: invalid port '9001-9000': range 9001-9000 ends before"),
])
def test_bad_port_ranges(tmp_path: Path, ports: str, message: str) -> None:
    with pytest.raises(ComposeError, match=r"compose.yaml: services.web.ports" + message):
        _project(tmp_path, f"services:\n  web:\n    image: x\n    ports: {ports}\n")


def test_run_options_of_a_service(tmp_path: Path) -> None:
    from pytest_isobox.engine.specs import RestartPolicy

    project = _project(tmp_path, """
services:
  web:
    image: x
    expose: ["7000", "7100-7101/udp"]
    restart: on-failure:3
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    extra_hosts: ["db:10.0.0.5"]
    dns: 10.0.0.53
    dns_search: [example.test]
    dns_opt: [ndots:1]
    shm_size: 128m
    sysctls: {net.ipv4.ip_forward: "1"}
""")
    spec = container_spec(project, project.services["web"])
    assert spec.expose == ["7000/tcp", "7100/udp", "7101/udp"]
    assert spec.restart == RestartPolicy("on-failure", 3)
    assert (spec.cap_add, spec.cap_drop) == (["CAP_NET_ADMIN"], ["CAP_MKNOD"])
    assert spec.extra_hosts == ["db:10.0.0.5"]
    assert (spec.dns, spec.dns_search, spec.dns_options) == (["10.0.0.53"], ["example.test"],
                                                             ["ndots:1"])
    assert (spec.shm_size, spec.sysctls) == (128 * 1024**2, {"net.ipv4.ip_forward": "1"})
    with pytest.raises(ComposeError, match=r"compose.yaml: services.web: invalid restart "
                                           r"policy 'sometimes'"):
        _project(tmp_path, "services:\n  web:\n    image: x\n    restart: sometimes\n")


def test_network_mode(tmp_path: Path) -> None:
    project = _project(tmp_path, "services:\n  web:\n    image: x\n    network_mode: host\n")
    spec = container_spec(project, project.services["web"])
    assert (spec.network_mode, spec.networks) == ("host", [])
    assert project.networks == {}  # no default network for nobody
    for text, message in [
        ("network_mode: 'service:db'", r"services.web.network_mode: 'service:db' not supported"),
        ("network_mode: none\n    networks: [back]\nnetworks: {back: {}}",
         r"services.web: network_mode and networks cannot be combined$"),
    ]:
        with pytest.raises(ComposeError, match=message):
            _project(tmp_path, f"services:\n  web:\n    image: x\n    {text}\n")
