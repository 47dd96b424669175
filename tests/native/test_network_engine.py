"""Networking through the native engine: real busybox containers, their /etc/hosts
bind-mounted by the runtime, published ports reached from the test process, names and aliases
resolved by busybox itself, and nothing left on the host once the engine is closed."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec, NetworkAttachment, PortSpec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (native engine)")

ECHO = ["nc", "-ll", "-p", "8080", "-e", "cat"]


@pytest.fixture
def engine(isobox_home: Path, busybox_rootfs: Path) -> Iterator[object]:
    native = pytest.importorskip("pytest_isobox.native.engine")
    eng = native.NativeEngine(isobox_home)
    eng.import_rootfs(busybox_rootfs, "busybox:net")
    yield eng
    bridges = {r["bridge"] for r in eng.network.store.networks()}
    owners = {r["id"] for r in eng.network.store.networks()} | {
        e["id"] for e in eng.network.store.endpoints()}
    eng.close()
    for net in eng.networks():
        eng.network_remove(net.name)
    links = {name for _, name in socket.if_nameindex()}
    assert not bridges & links
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    assert not [owner for owner in owners if owner in rules]
    assert eng.network.store.endpoints() == []


def echo_when_ready(addr: tuple[str, int], payload: bytes, timeout: float = 10) -> bytes:
    """The first echo through `addr`; refusals (the server not listening yet) are retried."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(addr, timeout=5) as conn:
                conn.sendall(payload)
                return conn.recv(len(payload))
        except (ConnectionRefusedError, ConnectionResetError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_published_port_of_a_busybox_container(engine) -> None:
    state = engine.run(ContainerSpec(image="busybox:net", command=ECHO,
                                     ports=[PortSpec.parse("8080")]))
    host, port = state.ports["8080/tcp"][0]
    assert host == "127.0.0.1"
    assert echo_when_ready((host, port), b"through DNAT\n") == b"through DNAT\n"
    settings = engine.inspect(state.id)["NetworkSettings"]
    assert settings["Networks"]["bridge"]["IPAddress"] == state.ips["bridge"]
    assert settings["Ports"]["8080/tcp"][0]["HostPort"] == str(port)
    engine.remove(state.id, force=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again


def test_containers_reach_each_other_by_name_and_alias(engine) -> None:
    net = engine.network_create("appnet")
    engine.run(ContainerSpec(image="busybox:net", command=ECHO, name="db",
                             networks=[NetworkAttachment(net.name, ("cache",))]))
    web = engine.run(ContainerSpec(image="busybox:net", command=["sleep", "60"], name="web",
                                   networks=[NetworkAttachment(net.name)]))
    script = ("for host in db cache; do "
              "  for i in $(seq 100); do echo hi-$host | nc -w 2 $host 8080 && break; "
              "  usleep 20000; done; done")
    result = engine.exec(web.id, ["sh", "-c", script])
    assert result.stdout == b"hi-db\nhi-cache\n", result.output
    hosts = engine.exec(web.id, ["cat", "/etc/hosts"]).stdout.decode()
    assert "\tdb cache " in hosts


def test_none_network_has_only_loopback(engine) -> None:
    state = engine.run(ContainerSpec(image="busybox:net", command=["ls", "/sys/class/net"],
                                     network_mode="none"))
    assert engine.wait(state.id) == 0
    assert b"".join(data for _, data in engine.logs(state.id)) == b"lo\n"
    assert engine.state(state.id).ips == {}


def test_wget_and_ping_resolve_peers_through_etc_hosts(engine) -> None:
    net = engine.network_create("webnet")
    serve = "mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 80 -h /www"
    engine.run(ContainerSpec(image="busybox:net", name="web", command=["sh", "-c", serve],
                             networks=[NetworkAttachment(net.name, ("site",))]))
    client = engine.run(ContainerSpec(image="busybox:net", command=["sleep", "60"],
                                      networks=[NetworkAttachment(net.name)]))
    fetch = ("for i in $(seq 100); do wget -q -O- http://site/index.html && exit 0; "
             "usleep 20000; done; exit 1")
    assert engine.exec(client.id, ["sh", "-c", fetch]).stdout == b"served\n"
    assert engine.exec(client.id, ["ping", "-c", "1", "-W", "2", "web"]).exit_code == 0


def test_a_stopped_container_starts_again_at_once_on_its_network(engine) -> None:
    """Its veth, named from its id, is still going away right after the stop: the restart
    waits for that and takes the name back (it once failed with "File exists")."""
    state = engine.create(ContainerSpec(image="busybox:net", command=["sleep", "300"],
                                        network_mode="bridge"))
    try:
        for _ in range(10):
            engine.start(state.id)
            engine.stop(state.id, timeout=0)
        engine.start(state.id)
        assert engine.exec(state.id, ["ip", "-o", "-4", "addr", "show", "eth0"]).exit_code == 0
    finally:
        engine.remove(state.id, force=True)
