"""Container arguments in Docker's shapes, turned into an engine ContainerSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_isobox.engine import InvalidSpec, MountSpec, NetworkAttachment, PortSpec
from pytest_isobox.plugin.container_options import (
    CONFIG_HASH_LABEL,
    FIXTURE_LABEL,
    WORKER_LABEL,
    ContainerOptions,
    config_hash,
)


def spec(**options):
    options.setdefault("image", "img")
    return ContainerOptions(**options).to_spec(name="n", fixture="db", worker="gw1",
                                               base=Path("/project"), persistent=False)


def test_commands_environment_limits_and_labels():
    s = spec(command="sh -c 'echo hi'", entrypoint=["/init"], environment=["A=1", "B=x=y"],
             mem_limit="64m", cpus="0.5", pids_limit=32, labels={"team": "a"})
    assert s.command == ["sh", "-c", "echo hi"] and s.entrypoint == ["/init"]
    assert s.env == {"A": "1", "B": "x=y"}
    assert (s.mem_limit, s.cpus, s.pids_limit) == (64 * 1024**2, 0.5, 32)
    assert s.labels == {"team": "a", FIXTURE_LABEL: "db", WORKER_LABEL: "gw1"}


def test_ports_and_mounts():
    s = spec(ports=["8000/tcp", 53, "127.0.0.1:0:5353/udp"],
             mounts=["data:/var/lib/data", "./conf:/etc/app:ro", "tmpfs:/run",
                     {"type": "tmpfs", "target": "/cache", "size": "16m"}])
    assert s.ports == [PortSpec(8000), PortSpec(53), PortSpec(5353, "udp")]
    assert s.mounts == [MountSpec("volume", "/var/lib/data", "data"),
                        MountSpec("bind", "/etc/app", "/project/conf", True),
                        MountSpec("tmpfs", "/run"),
                        MountSpec("tmpfs", "/cache", size=16 * 1024**2)]


def test_named_networks_answer_to_the_fixture_name():
    s = spec(networks={"net-a": ["cache"], "net-b": []}, aliases=["db-main"])
    assert s.networks == [NetworkAttachment("net-a", ("db-main", "cache", "db")),
                          NetworkAttachment("net-b", ("db-main", "db"))]
    assert spec(network="none").network_mode == "none" and spec(network="none").networks == []


@pytest.mark.parametrize(("options", "message"), [
    ({"environment": ["=v"]}, "environment entry '=v': expected KEY=VALUE"),
    ({"mem_limit": "lots"}, "mem_limit: invalid size 'lots'"),
    ({"cpus": 0}, "cpus=0: expected a positive number"),
    ({"mounts": ["/a:relative"]}, "the target 'relative' must be an absolute path"),
    ({"mounts": ["a:b:c:d"]}, "expected SOURCE:TARGET[:ro], tmpfs:TARGET or a dict"),
    ({"ports": ["80/sctp"]}, "protocol must be tcp or udp"),
    ({"network": "a", "networks": ["b"]}, "give network= or networks=, not both"),
    ({"networks": ["host", "mine"]}, "cannot be combined with named networks"),
])
def test_bad_values_name_themselves(options, message):
    with pytest.raises(InvalidSpec, match=message.replace("[", r"\[").replace("(", r"\(")):
        spec(**options)


def test_a_bare_environment_name_takes_the_tests_value_as_docker_does(monkeypatch):
    monkeypatch.setenv("FROM_HOST", "yes")
    monkeypatch.delenv("NOT_SET", raising=False)
    assert spec(environment=["FROM_HOST", "NOT_SET", "A=1"]).env == {"FROM_HOST": "yes", "A": "1"}


def test_config_hash_follows_configuration_and_image():
    a = spec(environment={"V": "1"})
    assert config_hash(a, "sha256:1") == config_hash(spec(environment={"V": "1"}), "sha256:1")
    assert config_hash(a, "sha256:1") != config_hash(spec(environment={"V": "2"}), "sha256:1")
    assert config_hash(a, "sha256:1") != config_hash(a, "sha256:2")
    a.labels[CONFIG_HASH_LABEL] = "old"
    assert config_hash(a, "sha256:1") == config_hash(spec(environment={"V": "1"}), "sha256:1")


def test_factory_checks_values_without_references_at_declaration():
    from pytest_isobox import container

    container(image="{img}", mem_limit="{size}", ports=["{port}", 80])  # filled in at setup
    with pytest.raises(InvalidSpec, match="mem_limit: invalid size 'lots'"):
        container(image="{img}", mem_limit="lots")
    with pytest.raises(InvalidSpec, match="invalid port '80/sctp'"):
        container(image="{img}", ports=["{port}", "80/sctp"])
