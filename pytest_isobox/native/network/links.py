"""Bridges, veth pairs, addresses and routes, over rtnetlink in this process (pyroute2).

Root-only: every call here needs CAP_NET_ADMIN in the host's network namespace. Requests into
a container's namespace go over a netlink socket opened inside it: the calling thread enters
the namespace (setns by pid) just long enough to open the socket, then returns.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from pytest_isobox.native import linux
from pytest_isobox.native.network.ipam import Claim

BRIDGE_PREFIX = "isobox-"
VETH_PREFIX = "ibv"
IFNAMSIZ = 15


def bridge_name(network_id: str) -> str:
    return (BRIDGE_PREFIX + network_id)[:IFNAMSIZ]


def veth_name(container_id: str, index: int) -> str:
    """Host end of a container's index-th veth, unique per container id prefix."""
    return f"{VETH_PREFIX}{container_id[:10]}{index:x}"[:IFNAMSIZ]


@dataclass(frozen=True)
class Interface:
    """One container interface: its name inside, its address and prefix length."""

    name: str
    ip: IPv4Address
    prefixlen: int


def write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def read_sysctl(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@contextmanager
def _in_netns_of(pid: int) -> Iterator[None]:
    """Run the body with this thread in the network namespace of `pid`."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(target, linux.CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            linux.setns(own, linux.CLONE_NEWNET)
    finally:
        os.close(own)


class Links:
    """The host side of our networks: one rtnetlink socket, opened on first use, thread-safe."""

    def __init__(self) -> None:
        self._ipr: IPRoute | None = None
        self._mutex = threading.Lock()

    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def index(self, name: str) -> int | None:
        found = self.ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def claims(self) -> list[Claim]:
        """Every IPv4 prefix routed on this host (all tables), named for error messages."""
        with self._mutex:
            names = {link["index"]: link.get("ifname") for link in self.ipr.get_links()}
            claims = []
            for route in self.ipr.get_routes(family=socket.AF_INET):
                dst, length = route.get("dst"), route["dst_len"]
                if dst is None or length == 0:
                    continue
                net = IPv4Network(f"{dst}/{length}", strict=False)
                dev = names.get(route.get("oif"), "?")
                claims.append(Claim(net, f"route {net} dev {dev}"))
            return claims

    def create_bridge(self, name: str, gateway: IPv4Address, prefixlen: int) -> None:
        """A bridge holding the gateway address, up, forwarding, accepting 127/8 sources.

        route_localnet on this bridge only lets DNAT'd loopback connections leave through it;
        forwarding is set per interface, never the host-wide switch.
        """
        with self._mutex:
            self.ipr.link("add", ifname=name, kind="bridge")
            idx = self.index(name)
            conf = f"/proc/sys/net/ipv4/conf/{name}"
            write_sysctl(f"{conf}/route_localnet", "1")
            write_sysctl(f"{conf}/forwarding", "1")
            write_sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")
            self.ipr.addr("add", index=idx, address=str(gateway), prefixlen=prefixlen)
            self.ipr.link("set", index=idx, state="up")

    def delete(self, name: str) -> bool:
        """Delete a link by name; False when it was already gone."""
        with self._mutex:
            idx = self.index(name)
            if idx is None:
                return False
            try:
                self.ipr.link("del", index=idx)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise
                return False
            return True

    def exists(self, name: str) -> bool:
        with self._mutex:
            return self.index(name) is not None

    def add_veth(self, host_name: str, bridge: str, pid: int, peer_name: str, mac: str) -> None:
        """A veth pair: host end up on `bridge`, peer created inside pid's netns as peer_name."""
        with self._mutex:
            master = self.index(bridge)
            if master is None:
                raise OSError(errno.ENODEV, f"bridge {bridge} does not exist")
            self.ipr.link(
                "add", ifname=host_name, kind="veth", master=master, state="up",
                peer={"ifname": peer_name, "address": mac, "net_ns_pid": pid},
            )

    def uplinks(self) -> list[str]:
        """Interfaces that carry a default route: where outbound traffic leaves."""
        with self._mutex:
            names = {link["index"]: link.get("ifname") for link in self.ipr.get_links()}
            return sorted({
                names[r.get("oif")] for r in self.ipr.get_routes(family=socket.AF_INET)
                if r["dst_len"] == 0 and r.get("table") == 254 and r.get("oif") in names
            })


def configure_container(pid: int, interfaces: list[Interface], gateway: IPv4Address | None) -> None:
    """Inside pid's netns: loopback up; each interface addressed and up; default route."""
    with _in_netns_of(pid):
        ipr = IPRoute()
    with ipr:
        ipr.link("set", index=1, state="up")
        for iface in interfaces:
            idx = ipr.link_lookup(ifname=iface.name)[0]
            ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.prefixlen)
            ipr.link("set", index=idx, state="up")
        if gateway is not None:
            ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))


def loopback_up(pid: int) -> None:
    """The whole network of a `none` container: its loopback, up."""
    configure_container(pid, [], None)
