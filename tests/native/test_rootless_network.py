"""Rootless networks and published ports, as a throwaway user, on the real kernel.

Stand-in containers (`NetnsProcess`: a process alone in a fresh network namespace, made
inside the user's user namespace) are attached by `RootlessNetworkManager`; traffic goes over
the helper namespace's bridges and through the port relay, from the user's own processes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec, NetworkAttachment, PortSpec
from pytest_isobox.native.network.sandbox import NetnsProcess, send_line, tcp_echo, udp_echo
from pytest_isobox.native.rootless.idmap import current_mapping
from pytest_isobox.native.rootless.networks import RootlessNetworkManager
from pytest_isobox.native.rootless.ports import PortRelay, publish
from pytest_isobox.native.rootless.userns import UserNamespace
from tests.native.rootless_users import ThrowawayUser, run_as, runtime_dir, throwaway_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="creates throwaway users: needs root")


@pytest.fixture(scope="module")
def user() -> ThrowawayUser:
    with throwaway_user(subids=True) as made:
        yield made


def _echo_roundtrip(addr: tuple[str, int], payload: bytes) -> bytes:
    with socket.create_connection(addr, timeout=5) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def _connect_from(ip: str, port: int) -> Callable[[socket.socket], None]:
    """A target that reports whether it can reach ip:port (a TCP echo) from its netns."""
    def target(channel: socket.socket) -> None:
        try:
            reply = _echo_roundtrip((ip, port), b"ping")
            send_line(channel, reply.decode())
        except OSError as exc:
            send_line(channel, f"error {exc.errno}")
    return target


def _networks_scenario(home: str) -> dict:
    """A server on `front` (alias `db`); a client on `front` and one on `back` try to reach
    it at the address its name has in their hosts files."""
    front_id, front_client, back_client = "a" * 64, "b" * 64, "c" * 64
    with UserNamespace(current_mapping(), runtime_dir()) as ns:
        def inside() -> dict:
            manager = RootlessNetworkManager(Path(home), ns)
            manager.create("front")
            manager.create("back")
            found: dict = {}
            server = NetnsProcess(tcp_echo(7000))
            procs = [server]
            try:
                spec = ContainerSpec(image="x", networks=[NetworkAttachment("front", ("db",))])
                manager.attach(front_id, "server", "server", server.pid, spec,
                               Path(home) / "hosts-server")
                server.start()
                assert server.recv_line() == "listening"
                server_ip = manager.inspect("front").containers[front_id]
                found["server_ip"] = server_ip
                for client_id, net in ((front_client, "front"), (back_client, "back")):
                    hosts_file = Path(home) / f"hosts-{net}"
                    client = NetnsProcess(_connect_from(server_ip, 7000))
                    procs.append(client)
                    spec = ContainerSpec(image="x", networks=[NetworkAttachment(net)])
                    manager.attach(client_id, f"client-{net}", "c", client.pid, spec, hosts_file)
                    client.start()
                    found[net] = client.recv_line()
                    found[f"hosts_{net}"] = hosts_file.read_text()
                for cid in (front_id, front_client, back_client):
                    manager.detach(cid)
                found["members_after"] = manager.inspect("front").containers
                manager.remove("front")
                manager.remove("back")
            finally:
                for proc in procs:
                    proc.stop()
                manager.close()
            return found
        return ns.run(inside)


def test_containers_on_one_network_reach_each_other_by_name_and_no_other(
        user: ThrowawayUser) -> None:
    home = str(user.home / "net-home")
    found = run_as(user, _networks_scenario, home)
    assert found["front"] == "ping"  # same network: connected and echoed
    assert found["back"].startswith("error")  # other network: unreachable
    line = next(ln for ln in found["hosts_front"].splitlines() if ln.startswith(found["server_ip"]))
    assert {"server", "db"} <= set(line.split()[1:])
    assert "server" not in found["hosts_back"]
    assert found["members_after"] == {}


def _published_scenario(protocol: str) -> dict:
    with UserNamespace(current_mapping(), runtime_dir()) as ns:
        target = tcp_echo(8080) if protocol == "tcp" else udp_echo(5353)
        port = PortSpec(8080) if protocol == "tcp" else PortSpec(5353, "udp")
        result: dict = {}
        r, w = os.pipe()  # the stand-in container is made by a child in the user namespace
        pid = os.fork()
        if pid == 0:
            try:
                ns.enter()
                proc = NetnsProcess(target)
                os.write(w, f"{proc.pid}\n".encode())
                proc.start()
                proc.recv_line()
                os.write(w, b"listening\n")
                time.sleep(60)  # ended below by its pid
            finally:
                os._exit(0)
        os.close(w)
        reader = os.fdopen(r)
        container_pid = int(reader.readline())
        assert reader.readline().strip() == "listening"
        relay = publish(container_pid, [port], ns.user_fd)
        try:
            host, host_port = relay.published[port.key][0]
            result["host"] = host
            if protocol == "tcp":
                result["reply"] = _echo_roundtrip((host, host_port), b"x" * 100000)
                result["refused_closes"] = _closes_at_once(publish(container_pid, [PortSpec(9)],
                                                                   ns.user_fd))
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(5)
                    sock.sendto(b"dgram", (host, host_port))
                    result["reply"] = sock.recv(100)
        finally:
            relay.stop()
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            reader.close()
        with socket.socket() as again:  # the host port is free once the relay is gone
            again.bind((host, host_port))
        return result


def _closes_at_once(relay: PortRelay) -> bool:
    host, port = relay.published["9/tcp"][0]
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.settimeout(5)
            return conn.recv(1) == b""
    except ConnectionResetError:
        return True
    finally:
        relay.stop()


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_published_port_on_loopback_reaches_the_container(user: ThrowawayUser,
                                                          protocol: str) -> None:
    found = run_as(user, _published_scenario, protocol)
    assert found["host"] == "127.0.0.1"
    if protocol == "tcp":
        assert found["reply"] == b"x" * 100000
        assert found["refused_closes"]
    else:
        assert found["reply"] == b"dgram"
