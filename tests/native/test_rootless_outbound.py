"""Outbound network of rootless containers: bridge -> helper netns -> NAT -> slirp4netns.

The only outside address a test may reach is the host's loopback, so the end-to-end proof
uses a holder whose slirp4netns allows host loopback (ISOBOX_SLIRP_HOST_LOOPBACK=1, in a home
of its own): a container on a named network connects to 10.0.2.2:PORT and gets the token of
a server this test runs on 127.0.0.1:PORT. The default holder forbids that
(--disable-host-loopback): the same connection is refused and the server sees nothing.
Networks stay apart with forwarding on (FORWARD drops bridge-to-bridge).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec, NetworkAttachment
from pytest_isobox.native.engine import NativeEngine
from pytest_isobox.native.rootless import outbound
from pytest_isobox.native.rootless.userns import UserNamespace
from tests.native.rootless_users import (
    ThrowawayUser,
    process_gone,
    run_as,
    throwaway_user,
    tun_open_to_users,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates throwaway users: needs root")

TOKEN = b"hello-from-the-host-loopback"


@pytest.fixture(scope="module")
def user() -> Iterator[ThrowawayUser]:
    with tun_open_to_users(), throwaway_user(subids=True, rootfs=True) as made:
        yield made


class LoopbackServer:
    """A TCP server on the host's 127.0.0.1 that sends TOKEN to every client it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed by close()
                return
            self.accepted += 1
            with conn:
                conn.sendall(TOKEN)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    made = LoopbackServer()
    try:
        yield made
    finally:
        made.close()


def _from_container(rootfs: str, port: int, home: str | None, host_loopback: bool) -> dict:
    """A container on the network `out` connects to the host's loopback through slirp."""
    if host_loopback:
        os.environ[outbound.HOST_LOOPBACK_ENV] = "1"
    with NativeEngine(home) as engine:
        engine.import_rootfs(rootfs, "bb:latest")
        engine.network_create("out")
        state = engine.run(ContainerSpec(
            image="bb", networks=[NetworkAttachment("out")],
            command=["sh", "-c", (f"nc -w 5 {outbound.SLIRP_HOST} {port} </dev/null "
                                  "|| echo no-connection")]))
        code = engine.wait(state.id)
        out = b"".join(data for _, data in engine.logs(state.id)).decode()
        engine.remove(state.id)
        engine.network_remove("out")
        holder = engine._rootless.userns.pid
        note = engine._rootless.outbound_note
    return {"code": code, "out": out.strip(), "note": note, "holder_gone": process_gone(holder)}


def test_a_container_reaches_the_host_loopback_through_slirp_when_allowed(
        user: ThrowawayUser, server: LoopbackServer) -> None:
    found = run_as(user, _from_container, str(user.home / "rootfs"), server.port,
                   str(user.home / "loopback-home"), True)
    assert found["note"] == ""  # slirp4netns and the NAT rules are up
    assert (found["code"], found["out"]) == (0, TOKEN.decode())
    assert server.accepted == 1
    assert found["holder_gone"]  # and slirp4netns with it: the user has no process left
    assert [p.pid for p in user.processes() if p.status() != "zombie"] == []


def test_host_loopback_is_off_by_default(user: ThrowawayUser, server: LoopbackServer) -> None:
    found = run_as(user, _from_container, str(user.home / "rootfs"), server.port, None, False)
    assert found["note"] == ""
    assert "no-connection" in found["out"].splitlines()  # (slirp says: network unreachable)
    assert server.accepted == 0


def _two_networks() -> dict:
    """With forwarding on, a container on `b` still cannot reach one on `a`."""
    with NativeEngine() as engine:
        engine.network_create("a")
        engine.network_create("b")
        web = engine.run(ContainerSpec(
            image="bb", name="web-a", networks=[NetworkAttachment("a")],
            command=["sh", "-c", "while true; do echo hi | nc -l -p 8080; done"]))
        ip = web.ips["a"]
        same = engine.run(ContainerSpec(
            image="bb", networks=[NetworkAttachment("a")],
            command=["sh", "-c", (f"for i in $(seq 50); do r=$(nc -w 2 {ip} 8080 </dev/null);"
                                  ' [ -n "$r" ] && echo "$r" && break; sleep 0.1; done')]))
        other = engine.run(ContainerSpec(
            image="bb", networks=[NetworkAttachment("b")],
            command=["sh", "-c", f"nc -w 2 {ip} 8080 </dev/null || echo unreachable"]))
        found = {}
        for key, state in (("same", same), ("other", other)):
            engine.wait(state.id)
            found[key] = b"".join(d for _, d in engine.logs(state.id)).decode().strip()
            engine.remove(state.id)
        userns = engine._rootless.userns
        found["forwarding"] = userns.run(_helper_forwarding, userns)
        engine.remove(web.id, force=True)
        engine.network_remove("a")
        engine.network_remove("b")
    return found


def _helper_forwarding(userns: UserNamespace) -> str:
    """The helper netns's IPv4 forwarding switch (in a `run` child: it may change netns)."""
    userns.enter_helper_net()
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


def test_networks_stay_apart_with_forwarding_on(user: ThrowawayUser) -> None:
    found = run_as(user, _two_networks)
    assert found["forwarding"] == "1"  # (slirp4netns is up: the bridges route out)
    assert found["same"] == "hi"
    assert "unreachable" in found["other"].splitlines()  # (nc's own line comes too)
    assert "hi" not in found["other"].splitlines()
