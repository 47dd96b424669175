"""Named networks of rootless containers: bridges in the user namespace's helper netns.

The rootful `NetworkManager` keeps its records, addresses and hosts files; this subclass
changes where links live and how ports are published. Every bridge is made in the helper
network namespace of the home's holder (`userns`, `holder`: one per home, shared by every
engine process, so containers of different processes meet on a network), each container's
veth has its host end there and its peer in the container's netns, and published ports are
relayed (`ports`) instead of DNAT'd. The helper namespace routes the bridges out through
slirp4netns's tap0 and nowhere else (`outbound`: FORWARD drops bridge-to-bridge packets), so
containers on one network reach each other by name and those on different networks do not.

Must run in a process that entered the user namespace and may start threads and fork (the
container's network agent, see `agent`; for tests a `UserNamespace.run` child). Records
(addresses, the hosts files) are in the home as for rootful networks.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, TypeVar

from pytest_isobox.engine import InvalidSpec, NetworkInfo, PortSpec
from pytest_isobox.native import linux
from pytest_isobox.native.network import ipam, rtnl
from pytest_isobox.native.network.links import Links
from pytest_isobox.native.network.manager import NetworkManager, _info
from pytest_isobox.native.network.store import HostRegistry, Record
from pytest_isobox.native.rootless.outbound import SLIRP_CIDR
from pytest_isobox.native.rootless.ports import PortRelay, start_relay
from pytest_isobox.native.rootless.userns import UserNamespace
from pytest_isobox.processes import ProcessIdentity

T = TypeVar("T")


def in_netns(fd: int, func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` on a thread of its own in the network namespace `fd`.

    A process in a user namespace cannot go back to the host's network namespace once it
    left it (the host's belongs to the initial user namespace), so work in the helper or a
    container namespace happens on a thread that ends with it. Sockets it makes stay there.
    """
    outcome: list = []

    def body() -> None:
        try:
            linux.setns(fd, linux.CLONE_NEWNET)
            outcome.append((True, func(*args)))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            outcome.append((False, exc))

    thread = threading.Thread(target=body, name="isobox-netns")
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class HelperLinks(Links):
    """`Links` whose netlink socket and calls are in the helper netns; route claims (for
    choosing subnets) still come from the host, so a subnet never shadows a host route."""

    def __init__(self, userns: UserNamespace) -> None:
        super().__init__()
        self.userns = userns
        self._host = Links()
        self.stay = False  # see `RootlessNetworkManager.stay_in_helper`
        self._moved = False

    @property
    def net_fd(self) -> int:
        return self.userns.net_fd

    def run(self, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` in the helper netns: on a thread of its own (`in_netns`), or, once
        allowed to stay there, on the calling thread, moved there for good."""
        if not self.stay:
            return in_netns(self.net_fd, func, *args)
        if not self._moved:
            linux.setns(self.net_fd, linux.CLONE_NEWNET)
            self._moved = True
        return func(*args)

    def claims(self) -> list[ipam.Claim]:
        """The host's routes, and slirp4netns's network (tap0's, in the helper netns)."""
        return [*self._host.claims(), ipam.Claim(SLIRP_CIDR, "slirp4netns (rootless outbound)")]

    def create_bridge(self, name: str, gateway: IPv4Address, prefixlen: int) -> None:
        self.run(self._create_bridge, name, gateway, prefixlen)

    @staticmethod
    def _create_bridge(name: str, gateway: IPv4Address, prefixlen: int) -> None:
        rtnl.add_bridge(name)  # (a netlink socket of this thread's netns: the helper's)
        rtnl.address_and_up(name, gateway, prefixlen)

    def delete(self, name: str) -> bool:  # type: ignore[override]
        return self.run(rtnl.delete_link, name)

    def exists(self, name: str) -> bool:
        return self.run(Links.index, name) is not None

    def uplinks(self) -> list[str]:
        return []

    def close(self) -> None:
        super().close()
        self._host.close()


class RootlessNetworkManager(NetworkManager):
    """Networks for rootless containers (see the module docstring)."""

    def __init__(self, home: Path, userns: UserNamespace) -> None:
        super().__init__(home, publish="relay")
        self._links = HelperLinks(userns)

    @property
    def registry(self) -> HostRegistry:
        """Bridges are per user namespace, not host-wide: the registry lives in the home."""
        if self._registry is None:
            self._registry = HostRegistry(self.home / "networks" / "registry")
        return self._registry

    def close(self) -> None:
        """Close the netlink sockets. Bridges go with the helper namespace."""
        self._links.close()

    def stay_in_helper(self) -> None:
        """Let the calling thread move into the helper netns for good when it first works
        there, instead of starting a thread for each step (each one costs a wakeup or two:
        milliseconds on a loaded machine). For a process that will not need the host's
        netns after its first attach's addresses are claimed: a container's network agent.
        (Port reservations and a new network's route claims come before, from the host.)"""
        self._links.stay = True

    def _require_privileges(self) -> None:
        """Nothing: the helper namespace is the user's own."""

    def _create(self, name: str, subnet: str | None, labels: dict[str, str] | None,
                **options: object) -> NetworkInfo:
        """A network record; its bridge is made in the helper netns when first attached to."""
        if options:
            raise InvalidSpec(f"network create --{next(iter(options))}: not supported for "
                              "rootless networks yet")
        with self.registry.lock, self.store.lock:
            claims = [ipam.Claim(IPv4Network(r["subnet"]), f"isobox network {r['name']}")
                      for r in self.store.networks()]
            record = self._new_record(name, subnet, labels, claims)
            record["rootless"] = True
            self.store.save_network(record)
        return _info(record)

    def _ensure_bridges(self, endpoint: Record) -> None:
        for net in endpoint["networks"]:
            if self._links.exists(net["bridge"]):
                continue
            with contextlib.suppress(FileExistsError):  # a concurrent attach made it first
                self._links.create_bridge(net["bridge"], IPv4Address(net["gateway"]),
                                          net["prefixlen"])

    def _teardown_network(self, bridge: str, network_id: str) -> None:
        self._links.delete(bridge)
        self.registry.remove(bridge)

    def _enable_uplink_forwarding(self) -> list[str]:
        return []

    def _wire(self, endpoint: Record, pid: int) -> None:
        for net in endpoint["networks"]:
            self._links.run(rtnl.add_veth, net["veth"], net["bridge"], pid,
                     net["ifname"], net["mac"])
        interfaces = [(n["ifname"], IPv4Address(n["ip"]), n["prefixlen"])
                      for n in endpoint["networks"]]
        gateway = IPv4Address(endpoint["networks"][0]["gateway"])
        self._links.run(rtnl.configure_netns, pid, interfaces, gateway)

    def _add_veth(self, net: Record, pid: int) -> None:
        """`network connect`'s veth: made in the helper netns, where the bridges are."""
        self._links.run(rtnl.add_veth, net["veth"], net["bridge"], pid,
                 net["ifname"], net["mac"])

    def _configure(self, pid: int, interfaces: list[tuple[str, IPv4Address, int]],
                   gateway: IPv4Address | None, *, loopback: bool = False) -> None:
        self._links.run(functools.partial(rtnl.configure_netns, loopback=loopback),
                 pid, interfaces, gateway)

    def _relay(self, container_id: str, pid: int, ports: list[PortSpec]) -> None:
        """Relay the reserved host ports into the container's netns from a relay process."""
        if not ports:
            return
        with self._mutex:
            sockets = list(self._reservations[container_id].sockets)
        relay = PortRelay(start_relay(pid, list(zip(sockets, ports))))
        with self._mutex:
            self._relays[container_id] = relay

    def detach(self, container_id: str) -> None:
        """Stop the relay (if this process holds it), free the ports, forget the addresses.

        The veths need no deleting: a veth pair goes when the container's network namespace
        does, which is when its last process and the relay in it (gone with the network
        agent, see `agent`) have ended. So detach needs no thread and works in a monitor."""
        self._release_ports(container_id)
        with self.store.lock:
            if self.store.endpoint(container_id) is not None:
                self._forget({container_id})

    def sweep(self, live_container_ids: set[str], *, other_homes: bool = True) -> list[str]:
        """Forget the addresses and hosts entries of dead containers (their veths and relays
        went with their network namespaces and agents), then remove the unused networks whose
        creating process is dead, as the rootful sweep does (`other_homes`: the rootful
        sweep's; a rootless home's networks are in its own namespace, seen from no other)."""
        cleaned: list[str] = []
        with self.store.lock:
            dead = {e["id"] for e in self.store.endpoints() if e["id"] not in live_container_ids}
            dead |= {cid for r in self.store.networks() for cid in r["members"]
                     if cid not in live_container_ids}
            if dead:
                cleaned += [f"address {a}" for a in self._forget(dead)]
        doomed = [r for r in self.store.networks() if not r["members"]
                  and (owner := ProcessIdentity.load(r.get("owner"))) is not None
                  and not owner.alive()]
        if doomed:  # their bridges are in the helper netns: removed from inside the namespace
            cleaned += self._links.userns.run(self._sweep_networks, self.store, doomed)
        return cleaned
