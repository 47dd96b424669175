"""Container networking on the real kernel, beside the running dockerd: bridges, veths,
published TCP and UDP ports, named networks resolving names and aliases, isolation, the
`none` and `host` modes, concurrent allocation, and the sweep of dead containers.

Each "container" is a forked child alone in a new network namespace (NetnsProcess), attached
exactly as the runtime attaches a container waiting before exec. Traffic only goes to
loopback and to addresses of these children. Finalizers detach every child, remove every
network and check that no link or iptables rule of this test remains.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pytest_isobox.engine import (
    PERSISTENT_LABEL,
    ConflictError,
    ContainerSpec,
    InvalidSpec,
    NetworkAttachment,
    NetworkNotFound,
    PortSpec,
)
from pytest_isobox.native import linux
from pytest_isobox.native.network import firewall, nft, rtnl
from pytest_isobox.native.network.links import veth_name
from pytest_isobox.native.network.manager import Attachment, NetworkManager
from pytest_isobox.native.network.sandbox import NetnsProcess, Target, send_line, tcp_echo, udp_echo

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netlink, iptables)")


def iptables_text() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def port_rules_text() -> str:
    """Our nftables table as `nft` lists it (every published port's rule, with its comment),
    or as our own dump reads it where the nft tool is missing."""
    if shutil.which("nft") is None:
        return "\n".join(f"{r.chain} {' '.join(r.tags)}" for r in nft.rules())
    listed = subprocess.run(["nft", "list", "table", "ip", nft.TABLE], capture_output=True,
                            text=True, check=False)
    return listed.stdout if listed.returncode == 0 else ""


def links() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


@dataclass
class Started:
    id: str
    proc: NetnsProcess
    attachment: Attachment
    hosts_file: Path

    @property
    def ip(self) -> str:
        return next(iter(self.attachment.ips.values()))

    def addr(self, key: str) -> tuple[str, int]:
        return self.attachment.ports[key][0]


@pytest.fixture
def manager(isobox_home: Path) -> Iterator[NetworkManager]:
    """A manager on a private home; afterwards nothing of it is left on the host."""
    mgr = NetworkManager(isobox_home)
    yield mgr
    mgr.sweep(set())
    ids = [n.id for n in mgr.list()]
    bridges = {record["bridge"] for record in mgr.store.networks()}
    for info in mgr.list():
        if info.name != "bridge":
            mgr.remove(info.name)
    mgr.destroy_all_if_unused()
    mgr.close()
    assert mgr.list() == []
    assert not bridges & links(), f"bridges left: {bridges & links()}"
    rules = iptables_text()
    assert not [i for i in ids if firewall.network_tag(i) in rules]


@pytest.fixture
def start(manager: NetworkManager, tmp_path: Path) -> Iterator[Callable[..., Started]]:
    """Start a netns child running `target`, attach it per `spec`, let it run (with its hosts
    file bind-mounted at /etc/hosts if asked); detached and killed at the end."""
    started: list[Started] = []

    def run(target: Target, spec: ContainerSpec | None = None, name: str = "c", *,
            mount_hosts: bool = False, wait_line: str | None = "listening") -> Started:
        spec = spec or ContainerSpec(image="none")
        cid = secrets.token_hex(32)
        hosts_file = tmp_path / cid[:12] / "hosts"
        hosts_file.parent.mkdir()

        def contained(channel: socket.socket) -> None:
            if mount_hosts:  # as the runtime does: the file is the container's /etc/hosts
                linux.mount(str(hosts_file), "/etc/hosts", None, linux.MS_BIND)
            target(channel)

        proc = NetnsProcess(contained, private_mounts=mount_hosts)
        try:
            attachment = manager.attach(cid, name, name, proc.pid, spec, hosts_file)
        except BaseException:
            proc.stop()
            raise
        item = Started(cid, proc, attachment, hosts_file)
        started.append(item)
        proc.start()
        if wait_line is not None:
            assert proc.recv_line() == wait_line
        return item

    yield run
    for item in started:
        manager.detach(item.id)
        item.proc.stop()
    manager.settle()
    left = {name for name in links() for item in started if name.startswith(f"ibv{item.id[:10]}")}
    assert not left, f"veths left: {left}"


def echo_tcp(addr: tuple[str, int], payload: bytes = b"ping") -> bytes:
    with socket.create_connection(addr, timeout=5) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        return data


def echo_udp(addr: tuple[str, int], payload: bytes = b"ping") -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(payload, addr)
        return sock.recvfrom(65536)[0]


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def can_bind(port: int, kind: int, reuse: bool = False) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        if reuse:  # as servers do: a relayed connection's TIME_WAIT may still hold the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE
            return False
        return True


# ----------------------------------------------------------------------- published ports

def test_tcp_echo_through_published_port(start: Callable[..., Started]) -> None:
    c = start(tcp_echo(8080), ContainerSpec(image="x", ports=[PortSpec.parse("8080")]))
    host, port = c.addr("8080/tcp")
    assert host == "127.0.0.1" and port > 0
    assert echo_tcp((host, port), b"hello over DNAT") == b"hello over DNAT"
    assert echo_tcp((c.ip, 8080), b"direct") == b"direct"


def test_udp_echo_through_explicit_host_port(start: Callable[..., Started]) -> None:
    host_port = free_port(socket.SOCK_DGRAM)
    spec = ContainerSpec(image="x", ports=[PortSpec.parse(f"{host_port}:53/udp")])
    c = start(udp_echo(53), spec)
    assert c.attachment.ports == {"53/udp": [("127.0.0.1", host_port)]}
    assert echo_udp(("127.0.0.1", host_port), b"dns?") == b"dns?"


def test_tcp_and_udp_on_one_container_with_explicit_address(start: Callable[..., Started]) -> None:
    def both(channel: socket.socket) -> None:
        tcp = socket.create_server(("0.0.0.0", 7000))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", 7000))
        send_line(channel, "listening")
        conn, _ = tcp.accept()
        conn.sendall(b"tcp:" + conn.recv(100))
        conn.close()
        data, peer = udp.recvfrom(100)
        udp.sendto(b"udp:" + data, peer)

    ports = [PortSpec.parse("127.0.0.1:0:7000/tcp"), PortSpec.parse("7000/udp")]
    c = start(both, ContainerSpec(image="x", ports=ports))
    assert echo_tcp(c.addr("7000/tcp"), b"a") == b"tcp:a"
    assert echo_udp(c.addr("7000/udp"), b"b") == b"udp:b"


def test_ports_are_free_again_after_detach(manager: NetworkManager,
                                           start: Callable[..., Started]) -> None:
    ports = [PortSpec.parse("9000"), PortSpec.parse("9000/udp")]
    c = start(tcp_echo(9000), ContainerSpec(image="x", ports=ports))
    tcp_port, udp_port = c.addr("9000/tcp")[1], c.addr("9000/udp")[1]
    assert not can_bind(tcp_port, socket.SOCK_STREAM)
    assert not can_bind(udp_port, socket.SOCK_DGRAM)
    assert nft.container_tag(c.id) in port_rules_text()

    manager.detach(c.id)
    manager.detach(c.id)  # idempotent

    assert nft.container_tag(c.id) not in port_rules_text()
    assert can_bind(tcp_port, socket.SOCK_STREAM)
    assert can_bind(udp_port, socket.SOCK_DGRAM)
    with pytest.raises(ConnectionRefusedError):
        echo_tcp(("127.0.0.1", tcp_port))
    assert manager.inspect("bridge").containers == {}


def test_republished_udp_port_reaches_the_new_container_at_once(
        manager: NetworkManager, start: Callable[..., Started]) -> None:
    host_port = free_port(socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:  # one flow, one source port
        client.settimeout(5)
        first = start(udp_echo(53), ContainerSpec(
            image="x", ports=[PortSpec.parse(f"{host_port}:53/udp")]))
        client.sendto(b"one", ("127.0.0.1", host_port))
        assert client.recv(16) == b"one"
        manager.detach(first.id)
        manager.settle()  # its veth is gone, so its address may be given out again
        second = start(udp_echo(54), ContainerSpec(
            image="x", ports=[PortSpec.parse(f"{host_port}:54/udp")]))
        client.sendto(b"two", ("127.0.0.1", host_port))
        assert client.recv(16) == b"two"  # not sent on to the first container's old flow
        assert second.ip == first.ip  # the address came back and was given out again


def test_publishing_a_taken_host_port_fails_cleanly(manager: NetworkManager,
                                                    start: Callable[..., Started]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        taken = holder.getsockname()[1]
        with pytest.raises(ConflictError, match=f"127.0.0.1:{taken}/tcp is in use"):
            start(tcp_echo(80), ContainerSpec(image="x", ports=[
                PortSpec.parse("81"), PortSpec.parse(f"{taken}:80")]))
    assert all(not n.containers for n in manager.list())
    assert manager.store.endpoints() == []
    assert not manager._reservations  # the port taken before the failing one is free again


# ----------------------------------------------------------------------- bridges and names

def test_containers_on_default_bridge_reach_each_other_by_ip(start: Callable[..., Started]) -> None:
    """Bridged traffic crosses iptables' FORWARD (br_netfilter): with dockerd's DROP policy,
    only our ACCEPT rules let it through."""
    server = start(tcp_echo(5000))

    def client(channel: socket.socket) -> None:
        send_line(channel, echo_tcp((server.ip, 5000), b"across the bridge").decode())

    c = start(client, wait_line=None)
    assert c.proc.recv_line() == "across the bridge"
    assert server.ip != c.ip and server.attachment.gateway == c.attachment.gateway


def resolve_and_call(names: list[str], port: int) -> Target:
    """A client target: resolve each name through /etc/hosts with glibc and with busybox's
    nc, and echo through each."""
    def run(channel: socket.socket) -> None:
        for name in names:
            ip = socket.gethostbyname(name)
            reply = echo_tcp((ip, port), name.encode()).decode()
            nc = subprocess.run(["/bin/busybox", "nc", "-w", "3", name, str(port)],
                                input=b"nc-" + name.encode(), capture_output=True, check=False)
            send_line(channel, f"{name} {ip} {reply} {nc.stdout.decode()}")
    return run


def test_named_network_resolves_names_and_aliases(manager: NetworkManager,
                                                  start: Callable[..., Started]) -> None:
    net = manager.create(f"app-{secrets.token_hex(3)}", labels={"team": "network"})
    assert net.labels == {"team": "network"}
    db = start(tcp_echo(6379), ContainerSpec(
        image="x", networks=[NetworkAttachment(net.name, ("cache", "redis"))]), name="db")
    db_hosts_inode = db.hosts_file.stat().st_ino
    names = ["db", "cache", "redis", db.id[:12]]
    spec = ContainerSpec(image="x", networks=[NetworkAttachment(net.name, ("web",))])
    c = start(resolve_and_call(names, 6379), spec, name="frontend", mount_hosts=True,
              wait_line=None)
    for name in names:
        assert c.proc.recv_line().split(" ") == [name, db.ip, name, f"nc-{name}"]

    # db's file (bind-mounted in a real container) was rewritten in place and lists the client
    assert db.hosts_file.stat().st_ino == db_hosts_inode
    assert f"{c.ip}\tfrontend web {c.id[:12]}" in db.hosts_file.read_text()
    assert manager.inspect(net.name).containers == {db.id: db.ip, c.id: c.ip}

    manager.detach(c.id)
    assert "frontend" not in db.hosts_file.read_text()
    assert db.hosts_file.stat().st_ino == db_hosts_inode


def test_different_networks_cannot_reach_each_other(manager: NetworkManager,
                                                     start: Callable[..., Started]) -> None:
    red, blue = (manager.create(f"{c}-{secrets.token_hex(3)}") for c in ("red", "blue"))
    assert red.subnet != blue.subnet
    server = start(tcp_echo(7777), ContainerSpec(image="x", network_mode=red.name))
    default_server = start(tcp_echo(7777))

    def probe(channel: socket.socket) -> None:
        for ip in (server.ip, default_server.ip):
            try:
                send_line(channel, echo_tcp_timeout((ip, 7777), 2.0))
            except OSError as exc:
                send_line(channel, f"blocked {type(exc).__name__}")

    outsider = start(probe, ContainerSpec(image="x", network_mode=blue.name), wait_line=None)
    assert outsider.proc.recv_line().startswith("blocked")
    assert outsider.proc.recv_line().startswith("blocked")
    insider = start(probe, ContainerSpec(image="x", network_mode=red.name), wait_line=None)
    assert insider.proc.recv_line() == "reached"  # the control: same network gets through
    assert insider.proc.recv_line().startswith("blocked")
    assert red.id in iptables_text() and blue.id in iptables_text()


def echo_tcp_timeout(addr: tuple[str, int], timeout: float) -> str:
    with socket.create_connection(addr, timeout=timeout) as conn:
        conn.sendall(b"x")
        return "reached" if conn.recv(1) == b"x" else "no echo"


def test_none_mode_has_only_loopback_and_it_is_up(manager: NetworkManager,
                                                  start: Callable[..., Started]) -> None:
    def report(channel: socket.socket) -> None:
        names = [name for _, name in socket.if_nameindex()]
        with socket.create_server(("127.0.0.1", 0)) as server:
            socket.create_connection(server.getsockname(), timeout=2).close()
        send_line(channel, ",".join(names))

    c = start(report, ContainerSpec(image="x", network_mode="none"), name="lonely",
              wait_line=None)
    assert c.proc.recv_line() == "lo"
    assert c.attachment.ips == {} and c.attachment.ports == {}
    assert "127.0.0.1\tlonely" in c.hosts_file.read_text()
    assert manager.list() == []  # no default bridge was made for it


def test_host_mode_gets_the_hosts_hosts_file(manager: NetworkManager, tmp_path: Path) -> None:
    hosts_file = tmp_path / "hosts"
    spec = ContainerSpec(image="x", network_mode="host", ports=[PortSpec.parse("80")])
    attachment = manager.attach(secrets.token_hex(32), "h", "h", os.getpid(), spec, hosts_file)
    assert attachment.ips == {} and attachment.ports == {}
    assert hosts_file.read_text() == Path("/etc/hosts").read_text()
    assert manager.list() == []


def test_subnet_override_and_gateway(manager: NetworkManager, start: Callable[..., Started]) -> None:
    net = manager.create(f"fixed-{secrets.token_hex(3)}", subnet="10.198.42.0/24")
    assert (net.subnet, net.gateway) == ("10.198.42.0/24", "10.198.42.1")
    c = start(tcp_echo(1), ContainerSpec(image="x", network_mode=net.name))
    assert c.ip == "10.198.42.2"
    assert c.attachment.macs == {net.name: "02:42:0a:c6:2a:02"}
    with pytest.raises(InvalidSpec, match="collides with isobox network"):
        manager.create(f"again-{secrets.token_hex(3)}", subnet="10.198.42.128/25")


def test_network_errors_name_the_value_at_fault(manager: NetworkManager) -> None:
    with pytest.raises(InvalidSpec, match=r"subnet 192\.0\.2\.0/24 collides with route 192\.0\.2\.0/24 dev eth0"):
        manager.create("clash", subnet="192.0.2.0/24")
    with pytest.raises(InvalidSpec, match="172.17.0.0/16"):
        manager.create("clash", subnet="172.17.8.0/24")
    with pytest.raises(InvalidSpec, match="not-a-subnet"):
        manager.create("clash", subnet="not-a-subnet")
    with pytest.raises(InvalidSpec, match="invalid network name"):
        manager.create("bad name")
    with pytest.raises(NetworkNotFound, match="nowhere"):
        manager.inspect("nowhere")
    with pytest.raises(NetworkNotFound):
        manager.remove("nowhere")
    with pytest.raises(ConflictError, match="default network"):
        manager.remove("bridge")
    with pytest.raises(ConflictError, match="default network"):
        manager.create("bridge")
    net = manager.create(f"dup-{secrets.token_hex(3)}")
    with pytest.raises(ConflictError, match="already exists"):
        manager.create(net.name)
    assert manager.inspect(net.id[:12]).name == net.name
    assert [n.name for n in manager.list()] == [net.name]
    with pytest.raises(NetworkNotFound, match="missing-net"):
        manager.attach(secrets.token_hex(32), "x", "x", os.getpid(),
                       ContainerSpec(image="x", network_mode="missing-net"), Path("/nonexistent"))


def test_busy_network_cannot_be_removed(manager: NetworkManager,
                                        start: Callable[..., Started]) -> None:
    net = manager.create(f"busy-{secrets.token_hex(3)}")
    c = start(tcp_echo(1), ContainerSpec(image="x", network_mode=net.name), name="worker")
    with pytest.raises(ConflictError, match="worker"):
        manager.remove(net.name)
    manager.detach(c.id)
    manager.remove(net.name)
    assert firewall.network_tag(net.id) not in iptables_text()


def test_rules_go_to_docker_user_beside_dockerd(manager: NetworkManager) -> None:
    net = manager.create(f"fw-{secrets.token_hex(3)}")
    record = manager.store.network(net.name)
    rules = [line.replace('"', "") for line in iptables_text().splitlines()
             if firewall.network_tag(net.id) in line]
    chain = "DOCKER-USER" if ":DOCKER-USER" in iptables_text() else "FORWARD"
    bridge = record["bridge"]
    assert f"-A {chain} -i {bridge} -o {bridge} -m comment --comment {firewall.network_tag(net.id)} -j ACCEPT" in rules
    assert any(f"-A POSTROUTING -s {net.subnet} ! -o {bridge}" in r and "MASQUERADE" in r for r in rules)
    manager.remove(net.name)
    assert firewall.network_tag(net.id) not in iptables_text()


def test_two_networks_per_container_with_names_on_each(manager: NetworkManager,
                                                       start: Callable[..., Started]) -> None:
    front, back = (manager.create(f"{n}-{secrets.token_hex(3)}") for n in ("front", "back"))
    both = start(tcp_echo(80), ContainerSpec(image="x", networks=[
        NetworkAttachment(front.name, ("api",)), NetworkAttachment(back.name)]), name="gateway")
    only_back = start(tcp_echo(80), ContainerSpec(image="x", network_mode=back.name), name="db")
    assert set(both.attachment.ips) == {front.name, back.name}
    text = both.hosts_file.read_text()
    assert f"{only_back.ip}\tdb" in text
    assert f"{both.attachment.ips[front.name]}\tgateway api" in text
    assert f"{both.attachment.ips[back.name]}\tgateway {both.id[:12]}" in only_back.hosts_file.read_text()
    assert "api" not in only_back.hosts_file.read_text()  # the alias lives on front only


def _attach_many(home: str, network: str, count: int, barrier: object, results: object) -> None:
    manager = NetworkManager(Path(home))
    procs, ids = [], []
    try:
        barrier.wait()
        for _ in range(count):
            proc = NetnsProcess(tcp_echo(1))
            procs.append(proc)
            cid = secrets.token_hex(32)
            ids.append(cid)
            hosts_file = Path(home) / f"hosts-{cid[:12]}"
            attachment = manager.attach(cid, cid[:6], cid[:6], proc.pid,
                                        ContainerSpec(image="x", network_mode=network), hosts_file)
            results.put(attachment.ips[network])
        barrier.wait()  # both hold all their addresses before any comes back
    finally:
        for cid in ids:
            manager.detach(cid)
        for proc in procs:
            proc.stop()
        manager.close()


@pytest.mark.parametrize("named", [True, False], ids=["named", "default-made-by-the-race"])
def test_concurrent_attaches_from_two_processes_get_distinct_addresses(
        manager: NetworkManager, isobox_home: Path, named: bool) -> None:
    name = manager.create(f"race-{secrets.token_hex(3)}").name if named else "bridge"
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_attach_many, args=(str(isobox_home), name, 5, barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    ips = [results.get(timeout=1) for _ in range(10)]
    assert len(set(ips)) == 10, ips
    assert all(not n.containers for n in manager.list())  # every address came back


def test_sweep_removes_what_dead_containers_left(manager: NetworkManager,
                                                 start: Callable[..., Started]) -> None:
    net = manager.create(f"sweep-{secrets.token_hex(3)}")
    alive = start(tcp_echo(80), ContainerSpec(image="x", network_mode=net.name), name="alive")
    dead = start(tcp_echo(80), ContainerSpec(image="x", network_mode=net.name,
                                             ports=[PortSpec.parse("80")]), name="dead")
    port = dead.addr("80/tcp")[1]
    dead.proc.stop()  # the container dies; its owner never detaches it
    record = manager.store.endpoint(dead.id)
    # forget the in-process port reservation, as a crashed owner would
    manager._reservations.pop(dead.id).release()

    cleaned = manager.sweep({alive.id})

    assert any("port rules" in line for line in cleaned), cleaned
    assert any(dead.ip in line for line in cleaned), cleaned
    assert nft.container_tag(dead.id) not in port_rules_text()
    assert record["networks"][0]["veth"] not in links()
    assert manager.inspect(net.name).containers == {alive.id: alive.ip}
    assert "dead" not in alive.hosts_file.read_text()
    assert can_bind(port, socket.SOCK_STREAM)
    assert manager.sweep({alive.id}) == []


def test_sweep_removes_bridges_whose_home_is_gone(tmp_path: Path) -> None:
    home = tmp_path / "doomed-home"
    doomed = NetworkManager(home)
    net = doomed.create(f"orphan-{secrets.token_hex(3)}")
    bridge = doomed.store.network(net.name)["bridge"]
    doomed.close()
    subprocess.run(["rm", "-rf", str(home)], check=True)

    survivor = NetworkManager(tmp_path / "other-home")
    try:
        cleaned = survivor.sweep(set())
    finally:
        survivor.close()
    assert any(bridge in line for line in cleaned), cleaned
    assert bridge not in links()
    assert firewall.network_tag(net.id) not in iptables_text()


def test_close_removes_the_unused_default_network_only(isobox_home: Path) -> None:
    manager = NetworkManager(isobox_home)
    named = manager.create(f"kept-{secrets.token_hex(3)}")
    with NetnsProcess(tcp_echo(1)) as proc:
        cid = secrets.token_hex(32)
        manager.attach(cid, "c", "c", proc.pid, ContainerSpec(image="x"), isobox_home / "hosts")
        bridge = manager.store.network("bridge")["bridge"]
        manager.close()  # a container still uses the default network: it stays
        assert bridge in links()
        manager.detach(cid)
    manager.close()
    assert bridge not in links()
    assert [n.name for n in manager.list()] == [named.name]
    manager.remove(named.name)
    manager.close()


def _attach_and_hang(home: str, ready: object) -> None:
    manager = NetworkManager(Path(home))
    proc = NetnsProcess(udp_echo(53))
    attachment = manager.attach(secrets.token_hex(32), "doomed", "doomed", proc.pid,
                                ContainerSpec(image="x", ports=[PortSpec.parse("53/udp"),
                                                                PortSpec.parse("80")]),
                                Path(home) / "doomed-hosts")
    ready.put((proc.pid, attachment.ports["80/tcp"][0][1], attachment.ports["53/udp"][0][1]))
    read_end, _ = os.pipe()
    os.read(read_end, 1)  # blocks until killed


def test_sweep_after_kill_9_of_the_owner(manager: NetworkManager, isobox_home: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Queue()
    owner = ctx.Process(target=_attach_and_hang, args=(str(isobox_home), ready))
    owner.start()
    netns_pid, tcp_port, udp_port = ready.get(timeout=30)
    (endpoint,) = manager.store.endpoints()
    assert nft.container_tag(endpoint["id"]) in port_rules_text()
    os.kill(owner.pid, 9)
    owner.join(10)
    with contextlib.suppress(ProcessLookupError):  # it dies with its owner (PDEATHSIG)
        os.kill(netns_pid, 9)

    cleaned = manager.sweep(set())

    assert cleaned, "the sweep reported nothing"
    assert nft.container_tag(endpoint["id"]) not in port_rules_text()
    assert endpoint["networks"][0]["veth"] not in links()
    assert f"network bridge of dead process {owner.pid}" in cleaned  # the dead one made it
    assert manager.list() == []
    assert can_bind(tcp_port, socket.SOCK_STREAM) and can_bind(udp_port, socket.SOCK_DGRAM)


def test_relay_publishing_reaches_services_on_the_containers_loopback(
        isobox_home: Path, tmp_path: Path) -> None:
    manager = NetworkManager(isobox_home, publish="relay")

    def loopback_only(channel: socket.socket) -> None:
        tcp = socket.create_server(("127.0.0.1", 8080))  # DNAT could not reach this one
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 5353))
        send_line(channel, "listening")
        for _ in range(2):  # in the order the test sends
            conn, _ = tcp.accept()
            with conn:
                conn.sendall(b"tcp:" + conn.recv(64))
            data, peer = udp.recvfrom(64)
            udp.sendto(b"udp:" + data, peer)

    cid = secrets.token_hex(32)
    spec = ContainerSpec(image="x", ports=[PortSpec.parse("8080"), PortSpec.parse("5353/udp")])
    with NetnsProcess(loopback_only) as proc:
        try:
            attachment = manager.attach(cid, "r", "r", proc.pid, spec, tmp_path / "hosts")
            proc.start()
            assert proc.recv_line() == "listening"
            tcp_addr, udp_addr = attachment.ports["8080/tcp"][0], attachment.ports["5353/udp"][0]
            assert nft.container_tag(cid) not in port_rules_text()
            for payload in (b"a", b"b"):
                with socket.create_connection(tcp_addr, timeout=5) as conn:
                    conn.sendall(payload)
                    assert conn.recv(64) == b"tcp:" + payload
                assert echo_udp(udp_addr, payload) == b"udp:" + payload
        finally:
            manager.detach(cid)
            manager.close()
    assert can_bind(tcp_addr[1], socket.SOCK_STREAM, reuse=True)
    assert can_bind(udp_addr[1], socket.SOCK_DGRAM)
    assert not [t for t in threading.enumerate() if t.name.startswith("isobox-port-relay")]


def test_attaching_twice_is_refused_and_keeps_the_first(manager: NetworkManager,
                                                        start: Callable[..., Started]) -> None:
    c = start(tcp_echo(8080), ContainerSpec(image="x", ports=[PortSpec.parse("8080")]))
    with pytest.raises(ConflictError, match="already attached"):
        manager.attach(c.id, "c", "c", c.proc.pid,
                       ContainerSpec(image="x", ports=[PortSpec.parse("8080")]), c.hosts_file)
    assert echo_tcp(c.addr("8080/tcp"), b"still") == b"still"


def test_a_network_whose_bridge_vanished_comes_back_on_attach(
        manager: NetworkManager, start: Callable[..., Started]) -> None:
    net = manager.create(f"reboot-{secrets.token_hex(3)}", subnet="10.198.77.0/24")
    record = manager.store.network(net.name)
    # what a reboot does: interfaces, rules and /run are gone, the home's records stay
    firewall.remove_tagged({firewall.network_tag(net.id)})
    subprocess.run(["ip", "link", "del", record["bridge"]], check=True)
    manager.registry.remove(record["bridge"])

    server = start(tcp_echo(9), ContainerSpec(image="x", network_mode=net.name))

    assert record["bridge"] in links()
    assert firewall.network_tag(net.id) in iptables_text()
    assert server.ip == "10.198.77.2"
    assert echo_tcp((server.ip, 9), b"back") == b"back"


def test_publishing_on_all_addresses(manager: NetworkManager,
                                     start: Callable[..., Started]) -> None:
    c = start(tcp_echo(80), ContainerSpec(image="x", ports=[PortSpec.parse("0.0.0.0:0:80")]))
    host, port = c.addr("80/tcp")
    assert host == "0.0.0.0"
    assert echo_tcp(("127.0.0.1", port), b"any") == b"any"  # loopback only, by the rules
    ours = [r for r in nft.rules() if nft.container_tag(c.id) in r.tags]
    assert sorted(r.chain for r in ours) == ["output", "prerouting"]
    manager.detach(c.id)
    assert nft.container_tag(c.id) not in port_rules_text()


def test_without_host_root_networks_fail_with_one_clear_error(tmp_path: Path) -> None:
    script = ("from pytest_isobox.native.network.manager import NetworkManager\n"
              "from pytest_isobox.engine import EngineUnavailable\n"
              f"try:\n    NetworkManager({str(tmp_path)!r}).create('n')\n"
              "except EngineUnavailable as exc:\n    print(exc)\n")
    done = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-c", script],
                          capture_output=True, text=True, check=True)
    assert "container networks need root in the host's user namespace" in done.stdout


def _create_networks(home: str, names: list[str]) -> None:
    creator = NetworkManager(Path(home))
    creator.create(names[0])
    creator.create(names[1], labels={PERSISTENT_LABEL: "1"})
    creator.close()


def test_sweep_removes_networks_of_dead_creators_unless_persistent(
        manager: NetworkManager, isobox_home: Path) -> None:
    names = [f"owned-{secrets.token_hex(3)}", f"kept-{secrets.token_hex(3)}"]
    ctx = multiprocessing.get_context("fork")
    creator = ctx.Process(target=_create_networks, args=(str(isobox_home), names))
    creator.start()
    creator.join(60)
    assert creator.exitcode == 0
    owned = manager.store.network(names[0])
    mine = manager.create(f"mine-{secrets.token_hex(3)}")  # its creator (we) lives on

    cleaned = manager.sweep(set())

    assert f"network {names[0]} of dead process {creator.pid}" in cleaned
    assert owned["bridge"] not in links()
    assert firewall.network_tag(owned["id"]) not in iptables_text()
    assert sorted(n.name for n in manager.list()) == sorted([names[1], mine.name])


def test_default_network_attach_leaves_other_hosts_files_alone(
        start: Callable[..., Started]) -> None:
    first = start(tcp_echo(1))
    before = first.hosts_file.stat().st_mtime_ns
    second = start(tcp_echo(1))
    assert first.hosts_file.stat().st_mtime_ns == before  # nothing in it changed: not rewritten
    assert f"{second.ip}\t" in second.hosts_file.read_text()
    assert second.ip not in first.hosts_file.read_text()


def test_an_address_comes_back_only_once_its_old_veth_is_gone(
        manager: NetworkManager, start: Callable[..., Started]) -> None:
    """A detached container's veth may outlive the detach (the kernel deletes it with its
    namespace); meanwhile its address, whose MAC the host and bridge still know, is not
    handed out again."""
    first = start(tcp_echo(1))
    pinned = os.open(f"/proc/{first.proc.pid}/ns/net", os.O_RDONLY)  # the namespace outlives
    try:                                                               # its process
        first.proc.stop()
        manager.detach(first.id)  # its process has ended: the veth is left to the kernel
        veth = veth_name(first.id, 0)
        assert veth in links()  # the namespace is pinned, so the kernel deletes nothing yet
        second = start(tcp_echo(1))
        assert second.ip != first.ip
        manager.settle()
        assert veth not in links()
        third = start(tcp_echo(1))
        assert third.ip == first.ip
    finally:
        os.close(pinned)


def _attach_pid_and_hang(home: str, pid: int, ready: object) -> None:
    manager = NetworkManager(Path(home))
    cid = secrets.token_hex(32)
    attachment = manager.attach(cid, "kept", "kept", pid,
                                ContainerSpec(image="x", ports=[PortSpec.parse("80")]),
                                Path(home) / "kept-hosts")
    ready.put((cid, attachment.ports["80/tcp"][0][1]))
    read_end, _ = os.pipe()
    os.read(read_end, 1)  # blocks until killed


def test_a_sweep_from_any_home_cleans_an_abandoned_home(tmp_path: Path) -> None:
    """A home whose run died while its kept container lived: a sweep from another home
    leaves that container alone while it lives, and removes its attachment and the dead run's
    network once it has ended. A live run's network and container are never touched."""
    abandoned, sweeper_home = tmp_path / "abandoned", tmp_path / "sweeper"
    live = NetworkManager(tmp_path / "live")
    sweeper = NetworkManager(sweeper_home)
    kept = NetnsProcess(tcp_echo(80))  # the kept container: it outlives its run
    live_proc = NetnsProcess(tcp_echo(7))
    live_id = secrets.token_hex(32)
    try:
        ctx = multiprocessing.get_context("fork")
        ready = ctx.Queue()
        run = ctx.Process(target=_attach_pid_and_hang, args=(str(abandoned), kept.pid, ready))
        run.start()
        kept_id, _ = ready.get(timeout=30)
        os.kill(run.pid, 9)  # the run dies; its home is never opened again
        run.join(10)
        kept.start()
        assert kept.recv_line() == "listening"
        live_attachment = live.attach(live_id, "live", "live", live_proc.pid, ContainerSpec(
            image="x", ports=[PortSpec.parse("7")]), tmp_path / "live-hosts")
        live_proc.start()
        assert live_proc.recv_line() == "listening"
        store = NetworkManager(abandoned).store
        (endpoint,) = store.endpoints()
        bridge = store.network("bridge")["bridge"]

        sweeper.sweep(set())  # the kept container lives: nothing of it goes

        assert nft.container_tag(kept_id) in port_rules_text()
        assert endpoint["networks"][0]["veth"] in links() and bridge in links()
        assert echo_tcp((endpoint["networks"][0]["ip"], 80), b"kept") == b"kept"

        kept.stop()
        cleaned = sweeper.sweep(set())

        assert any(f"network bridge of dead process {run.pid}" in line for line in cleaned), \
            cleaned
        assert nft.container_tag(kept_id) not in port_rules_text()
        assert endpoint["networks"][0]["veth"] not in links()
        assert bridge not in links()
        assert store.endpoints() == [] and store.network("bridge") is None
        # the live run's container still answers through its published port
        assert nft.container_tag(live_id) in port_rules_text()
        assert echo_tcp(live_attachment.ports["7/tcp"][0], b"live") == b"live"
    finally:
        kept.stop()
        live.detach(live_id)
        live_proc.stop()
        live.close()
        sweeper.close()


def _connect_and_echo(addr: tuple[str, int]) -> Target:
    def client(channel: socket.socket) -> None:
        try:
            send_line(channel, echo_tcp(addr, b"from-outside").decode())
        except OSError as exc:
            send_line(channel, f"failed: {exc}")
    return client


def reach_from_outside(port: int) -> str:
    """What a client in a namespace behind a veth of the host's (another machine, as far as
    the host can tell) gets back from connecting to the host's address there at `port`."""
    third = 4 + secrets.randbelow(250)
    host_ip, outside_ip = f"10.216.{third}.1", f"10.216.{third}.2"
    host_end = f"ibxo{secrets.token_hex(4)}"
    outside = NetnsProcess(_connect_and_echo((host_ip, port)))
    try:
        subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
                        "netns", str(outside.pid)], check=True)
        subprocess.run(["ip", "addr", "add", f"{host_ip}/30", "dev", host_end], check=True)
        subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
        Path(f"/proc/sys/net/ipv4/conf/{host_end}/forwarding").write_text("1")
        rtnl.configure_netns(outside.pid, [("eth0", IPv4Address(outside_ip), 30)],
                             IPv4Address(host_ip))
        outside.start()
        return outside.recv_line()
    finally:
        outside.stop()
        subprocess.run(["ip", "link", "del", host_end], check=False, capture_output=True)


def test_a_port_published_on_every_address_is_reached_from_outside(
        start: Callable[..., Started]) -> None:
    """A connection from another machine is DNAT'd and then forwarded: beside dockerd the
    FORWARD policy is DROP, and the network's rule for DNAT'd connections is what lets it
    through to the container."""
    c = start(tcp_echo(80), ContainerSpec(image="x", ports=[PortSpec.parse("0.0.0.0:0:80")]))
    assert reach_from_outside(c.addr("80/tcp")[1]) == "from-outside"


def test_a_network_of_an_older_version_gets_the_rule_for_published_ports(
        manager: NetworkManager, start: Callable[..., Started]) -> None:
    """Networks made before ports were accepted per network lack that rule; publishing on
    every address adds it, once."""
    net = manager.create(f"older-{secrets.token_hex(3)}")
    record = manager.store.network(net.name)
    rule = firewall.dnat_accept(record["bridge"], net.id)
    subprocess.run(["iptables", "-D", firewall.forward_chain(), *rule.split()], check=True)
    manager.store.update_network(net.name, rules_version=1)

    c = start(tcp_echo(80), ContainerSpec(image="x", network_mode=net.name,
                                          ports=[PortSpec.parse("0.0.0.0:0:80")]))

    assert reach_from_outside(c.addr("80/tcp")[1]) == "from-outside"
    assert manager.store.network(net.name)["rules_version"] == firewall.RULES_VERSION
    start(tcp_echo(80), ContainerSpec(image="x", network_mode=net.name,
                                      ports=[PortSpec.parse("0.0.0.0:0:80")]))
    accepts = [line for line in iptables_text().replace('"', "").splitlines()
               if "--ctstate DNAT" in line and firewall.network_tag(net.id) in line]
    assert len(accepts) == 1, accepts


def test_ports_are_published_after_the_table_went_meanwhile(
        manager: NetworkManager, start: Callable[..., Started]) -> None:
    """Another process removing the last network takes our nftables table along; the next
    publish in this process, which made the table before, makes it again."""
    first = start(tcp_echo(80), ContainerSpec(image="x", ports=[PortSpec.parse("80")]))
    nft.remove_table()
    assert nft.container_tag(first.id) not in port_rules_text()
    second = start(tcp_echo(80), ContainerSpec(image="x", ports=[PortSpec.parse("80")]))
    assert echo_tcp(second.addr("80/tcp"), b"again") == b"again"
    manager.detach(first.id)  # its rules went with the table: nothing to delete, no error
    assert nft.container_tag(second.id) in port_rules_text()
