"""Bridges and the host's routes, over rtnetlink in this process (`rtnl`, no pyroute2).

Root-only: every call here needs CAP_NET_ADMIN in the host's network namespace. The requests
of a container start (veth, addresses, routes) are in `rtnl`, batched for speed.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from ipaddress import IPv4Address, IPv4Network

from pytest_isobox import names
from pytest_isobox.native.network import rtnl
from pytest_isobox.native.network.ipam import Claim
from pytest_isobox.native.network.rtnl import delete_link

BRIDGE_PREFIX, VETH_PREFIX = names.BRIDGE_PREFIX, names.VETH_PREFIX
IFNAMSIZ = 15


def bridge_name(network_id: str) -> str:
    return (BRIDGE_PREFIX + network_id)[:IFNAMSIZ]


def veth_name(container_id: str, index: int) -> str:
    """Host end of a container's index-th veth, unique per container id prefix."""
    return f"{VETH_PREFIX}{container_id[:10]}{index:x}"[:IFNAMSIZ]


def write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def read_sysctl(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class Links:
    """The host side of our networks: one rtnetlink socket, opened on first use, thread-safe."""

    def __init__(self) -> None:
        self._doomed: queue.Queue[str] | None = None
        self._deleter: threading.Thread | None = None
        self._left: list[str] = []  # left to the kernel (see `left_to_kernel`)
        self._queued: list[str] = []  # given to the deleter thread since the last settle

    _owner_pid = 0

    def close(self) -> None:
        self.settle()

    @staticmethod
    def index(name: str) -> int | None:
        try:
            return socket.if_nametoindex(name)
        except OSError:
            return None

    def claims(self) -> list[Claim]:
        """Every IPv4 prefix routed on this host (all tables), named for error messages."""
        claims = []
        for dst, length, oif, _ in rtnl.ipv4_routes():
            if dst is None or length == 0:
                continue
            net = IPv4Network(f"{dst}/{length}", strict=False)
            claims.append(Claim(net, f"route {net} dev {_ifname(oif)}"))
        return claims

    def create_bridge(self, name: str, gateway: IPv4Address, prefixlen: int) -> None:
        """A bridge holding the gateway address, up, forwarding, accepting 127/8 sources.

        route_localnet on this bridge only lets DNAT'd loopback connections leave through it;
        forwarding is set per interface, never the host-wide switch.
        """
        rtnl.add_bridge(name)
        conf = f"/proc/sys/net/ipv4/conf/{name}"
        write_sysctl(f"{conf}/route_localnet", "1")
        write_sysctl(f"{conf}/forwarding", "1")
        write_sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")
        rtnl.address_and_up(name, gateway, prefixlen)

    @staticmethod
    def delete(name: str) -> bool:
        """Delete a link by name; False when it was already gone."""
        return delete_link(name)

    def delete_later(self, name: str) -> None:
        """Delete a link from a thread of this process, so the caller need not wait.

        Deleting a veth waits in the kernel for RCU grace periods, about 25 ms here. If this
        process ends first, a veth whose container has ended goes with its network namespace
        anyway; `settle` waits for what is queued."""
        if self._deleter is None or not self._deleter.is_alive() or self._owner_pid != os.getpid():
            self._doomed, self._owner_pid = queue.Queue(), os.getpid()
            self._deleter = threading.Thread(target=self._delete_queued, args=(self._doomed,),
                                             daemon=True, name="isobox-link-deleter")
            self._deleter.start()
        assert self._doomed is not None
        if len(self._queued) >= 64:  # a long-lived process: forget those already gone
            self._queued = [queued for queued in self._queued if self.index(queued) is not None]
        self._queued.append(name)
        self._doomed.put(name)

    @staticmethod
    def _delete_queued(doomed: queue.Queue[str]) -> None:
        while True:
            name = doomed.get()
            try:
                delete_link(name)
            except OSError:  # the sweep finds it (its address stays taken until it is gone)
                pass
            finally:
                doomed.task_done()

    def left_to_kernel(self, name: str) -> None:
        """A veth whose network namespace is going away: the kernel deletes it along with
        the namespace's other links, in one pass, so it is not deleted here. `settle` makes
        sure of it, for callers that must see it gone."""
        if len(self._left) >= 64:  # a long-lived process: forget those already gone
            self._left = [left for left in self._left if self.index(left) is not None]
        self._left.append(name)

    def settle(self) -> None:
        """Return once every link this process deleted or left to the kernel is gone:
        wait for the deleter thread, delete what the kernel has not."""
        if self._doomed is not None and self._owner_pid == os.getpid():
            self._doomed.join()
        left, self._left, self._queued = self._left, [], []
        for name in left:
            delete_link(name)

    def unsettled(self) -> dict[str, list[str]]:
        """Instead of `settle`: the links this process left to the kernel ("left") or to its
        deleter thread ("queued") that still exist, for another process to see gone (see
        `NetworkManager.hand_off`); this process forgets them."""
        left, queued = self._left, self._queued
        self._left, self._queued = [], []
        return {"left": [n for n in dict.fromkeys(left) if self.index(n) is not None],
                "queued": [n for n in dict.fromkeys(queued) if self.index(n) is not None]}

    def settle_handed(self, left: list[str], queued: list[str], *,
                      kernel_wait: float = 2.0) -> None:
        """`settle` for another process's `unsettled` links: the queued ones are deleted now;
        those left to the kernel go with their dead namespace in its cleanup (one batched
        pass: deleting them here as well would wait on RCU once more, holding the lock every
        veth creation takes), so they are waited for, and deleted only if still there after
        `kernel_wait` seconds."""
        import time

        for name in queued:
            delete_link(name)
        deadline = time.monotonic() + kernel_wait
        pending = [name for name in left if self.index(name) is not None]
        while pending and time.monotonic() < deadline:
            time.sleep(0.005)  # (polling the kernel's cleanup: no event says a link went)
            pending = [name for name in pending if self.index(name) is not None]
        for name in pending:
            delete_link(name)

    def uplinks(self) -> list[str]:
        """Interfaces that carry a default route: where outbound traffic leaves."""
        return sorted({_ifname(oif) for dst, length, oif, table in rtnl.ipv4_routes()
                       if length == 0 and table == rtnl.RT_TABLE_MAIN and oif})


def _ifname(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return "?"
