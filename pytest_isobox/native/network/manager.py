"""Networks of the native engine: bridges, container attachments, published ports, names.

`NetworkManager` is what the runtime calls. Guarantees:
- safe across processes sharing one home (a filelock around each state change; state files
  replaced atomically) and across homes on one host (subnets chosen under a host-wide lock);
- an attachment either completes or is undone; what a crash leaves, `sweep` removes, because
  the endpoint record is written before any veth, rule or port exists;
- every rule carries its owner's tag and goes with its owner (network or container);
- a network belongs to the process that made it (unless labelled persistent, as the CLI's are):
  once that process is dead and no container uses it, the sweep removes it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path
from typing import Any, Literal

from pytest_isobox.engine import (
    PERSISTENT_LABEL,
    ConflictError,
    ContainerSpec,
    EngineUnavailable,
    InvalidSpec,
    NetworkAttachment,
    NetworkInfo,
    NetworkNotFound,
    PortSpec,
)
from pytest_isobox.native.network import conntrack, firewall, hosts, ipam, rtnl
from pytest_isobox.native.network.links import (
    Links,
    bridge_name,
    read_sysctl,
    veth_name,
    write_sysctl,
)
from pytest_isobox.native.network.ports import Reservation, reserve
from pytest_isobox.native.network.relay import PortRelay
from pytest_isobox.native.network.store import HostRegistry, NetworkStore, Record
from pytest_isobox.native.state import ProcessIdentity

DEFAULT_NETWORK = "bridge"
SPECIAL_MODES = ("none", "host")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass
class Attachment:
    """What a container got: per network its address, gateway, MAC and prefix length, and per
    published port (`8080/tcp`) the host addresses it answers on."""

    ips: dict[str, str]
    ports: dict[str, list[tuple[str, int]]]
    gateway: dict[str, str] = field(default_factory=dict)
    macs: dict[str, str] = field(default_factory=dict)
    prefixlen: dict[str, int] = field(default_factory=dict)


def requested_networks(spec: ContainerSpec) -> list[NetworkAttachment]:
    """The networks a spec asks for, in order; empty for `none` and `host`."""
    wanted = list(spec.networks)
    if not wanted:
        mode = spec.network_mode or DEFAULT_NETWORK
        if mode in SPECIAL_MODES:
            return []
        wanted = [NetworkAttachment("bridge" if mode == "default" else mode)]
    seen: set[str] = set()
    for item in wanted:
        if item.network in SPECIAL_MODES:
            raise InvalidSpec(f"network {item.network!r} cannot be combined with other networks")
        if item.network in seen:
            raise InvalidSpec(f"network {item.network!r} is listed twice")
        if item.network == DEFAULT_NETWORK and item.aliases:
            raise InvalidSpec("network aliases need a user-defined network, not 'bridge'")
        seen.add(item.network)
    return wanted


def require_host_privileges() -> None:
    """Bridges, veths on them and iptables need root in the host's user namespace; say so
    clearly instead of failing on the first EPERM. (`none` and `host` need neither.)"""
    if not _host_root():
        raise EngineUnavailable(
            "container networks need root in the host's user namespace (bridges, veth pairs, "
            "iptables); rootless networking is not available yet: use network_mode 'none' or "
            "'host'")


@functools.cache
def _host_root() -> bool:
    try:
        uid_map = Path("/proc/self/uid_map").read_text().split()
    except OSError:
        uid_map = []
    return os.geteuid() == 0 and uid_map[:3] == ["0", "0", "4294967295"]


def _info(record: Record) -> NetworkInfo:
    return NetworkInfo(
        name=record["name"], id=record["id"], driver="bridge", subnet=record["subnet"],
        gateway=record["gateway"],
        containers={cid: m["ip"] for cid, m in record["members"].items()},
        labels=dict(record.get("labels", {})),
    )


def _check_ports(ports: list[PortSpec]) -> None:
    for port in ports:
        try:
            version = ip_address(port.host_ip).version if port.host_ip else 4
        except ValueError:
            raise InvalidSpec(f"cannot publish {port.key} on {port.host_ip!r}: "
                              "not an IP address") from None
        if version != 4:
            raise InvalidSpec(f"cannot publish {port.key} on {port.host_ip}: only IPv4 host addresses")


class NetworkManager:
    """Networks and attachments of one isobox home. Root-only (netlink, iptables)."""

    def __init__(self, home: Path, *, publish: Literal["dnat", "relay"] = "dnat") -> None:
        """publish: how ports are published: `dnat` (iptables, kernel speed) or `relay` (a
        thread of this process relays into the container; this process must live as long as
        the container, as the runtime's monitor does)."""
        if publish not in ("dnat", "relay"):
            raise InvalidSpec(f"invalid port publishing {publish!r}: expected dnat or relay")
        self.publish = publish
        self.home = Path(home)
        self.store = NetworkStore(self.home)
        self._links = Links()
        self._registry: HostRegistry | None = None
        self._reservations: dict[str, Reservation] = {}
        self._relays: dict[str, PortRelay] = {}
        self._mutex = threading.RLock()

    @property
    def registry(self) -> HostRegistry:
        if self._registry is None:
            self._registry = HostRegistry()
        return self._registry

    def close(self) -> None:
        """Done with networking in this process: the default network goes if no container uses
        it (the next attach makes it again), and the netlink socket is closed. Named networks
        stay; published ports stay reserved until their container's detach."""
        if self.store.network(DEFAULT_NETWORK) is not None:
            self.destroy_all_if_unused()
        self._links.close()

    def _require_privileges(self) -> None:
        """Root-only steps ahead (host bridges, iptables); a rootless subclass needs none."""
        require_host_privileges()

    # ------------------------------------------------------------------ networks

    def create(self, name: str, *, subnet: str | None = None,
               labels: dict[str, str] | None = None) -> NetworkInfo:
        """A new network: its bridge, its subnet (ours unless given), its rules. It belongs to
        this process (a sweep removes it, unused, once the process is dead) unless its labels
        hold PERSISTENT_LABEL=1 (then only `remove` does, as in Docker)."""
        if not _NAME.fullmatch(name) or name in SPECIAL_MODES:
            raise InvalidSpec(f"invalid network name {name!r}: use letters, digits, '_', '.', '-'")
        if name == DEFAULT_NETWORK:
            raise ConflictError("'bridge' is the default network: choose another name")
        return self._create(name, subnet, labels)

    def _create(self, name: str, subnet: str | None, labels: dict[str, str] | None) -> NetworkInfo:
        self._require_privileges()
        with self.registry.lock, self.store.lock:
            claims = [
                ipam.Claim(IPv4Network(e["subnet"]), f"isobox network {e['name']} ({e['bridge']})")
                for e in self.registry.entries()
            ]
            record = self._new_record(name, subnet, labels, claims)
            record["owner"] = None if (labels or {}).get(PERSISTENT_LABEL) == "1" \
                else ProcessIdentity.current().dump()
            net, network_id = IPv4Network(record["subnet"]), record["id"]
            try:
                self._links.create_bridge(record["bridge"], ipam.gateway_of(net), net.prefixlen)
                firewall.apply(firewall.network_rules(
                    record["bridge"], net, network_id, firewall.forward_chain()))
                record["host_sysctls"] = self._enable_uplink_forwarding()
                self.store.save_network(record)
            except BaseException:
                self._teardown_network(record["bridge"], network_id)
                raise
        return _info(record)

    def _new_record(self, name: str, subnet: str | None, labels: dict[str, str] | None,
                    claims: list[ipam.Claim]) -> Record:
        """A new network's record with a subnet colliding with none of `claims`, host routes
        or Docker's pools, registered host-wide. Caller holds the registry and store locks."""
        if self.store.network(name) is not None:
            raise ConflictError(f"network {name!r} already exists")
        claims = claims + self._links.claims() + ipam.docker_pool_claims()
        net = ipam.parse_subnet(subnet, claims) if subnet else ipam.pick_subnet(claims)
        network_id = secrets.token_hex(32)
        record: Record = {
            "name": name, "id": network_id, "bridge": bridge_name(network_id),
            "subnet": str(net), "gateway": str(ipam.gateway_of(net)),
            "labels": dict(labels or {}), "created": time.time(), "members": {},
            "host_sysctls": [],
        }
        self.registry.add(record["bridge"], self.home, name, network_id, str(net))
        return record

    def remove(self, name: str) -> None:
        """Remove a network nobody is attached to. The default network is not removable."""
        if name == DEFAULT_NETWORK:
            raise ConflictError("'bridge' is the default network and cannot be removed")
        self._remove_network(self._resolve(name)["name"])

    def inspect(self, name: str) -> NetworkInfo:
        return _info(self._resolve(name))

    def list(self) -> list[NetworkInfo]:
        return [_info(r) for r in self.store.networks()]

    def destroy_all_if_unused(self) -> None:
        """Remove the default network when no container is attached (it comes back lazily)."""
        try:
            self._remove_network(DEFAULT_NETWORK)
        except (NetworkNotFound, ConflictError, EngineUnavailable):
            pass

    def _resolve(self, ref: str) -> Record:
        record = self.store.network(ref) if _NAME.fullmatch(ref) else None
        if record is None and len(ref) >= 6:
            matches = [r for r in self.store.networks() if r["id"].startswith(ref)]
            record = matches[0] if len(matches) == 1 else None
        if record is None:
            raise NetworkNotFound(f"network {ref!r} not found")
        return record

    def _remove_network(self, name: str) -> None:
        self._require_privileges()
        with self.registry.lock, self.store.lock:
            record = self.store.network(name)
            if record is None:
                raise NetworkNotFound(f"network {name!r} not found")
            if record["members"]:
                names = ", ".join(m["name"] for m in record["members"].values())
                raise ConflictError(f"network {name!r} has containers attached: {names}")
            self._teardown_network(record["bridge"], record["id"])
            self.store.delete_network(name)

    def _ensure_bridges(self, endpoint: Record) -> None:
        """Bring back the bridge (and rules) of a network whose bridge is gone, as after a
        reboot: records in the home outlive the interfaces and rules of the host."""
        for net in endpoint["networks"]:
            if self._links.index(net["bridge"]) is not None:
                continue
            with self.registry.lock:
                if self._links.index(net["bridge"]) is not None:
                    continue
                record = self.store.network(net["network"])
                if record is None or record["id"] != net["network_id"]:
                    raise NetworkNotFound(f"network {net['network']!r} was removed meanwhile")
                subnet = IPv4Network(record["subnet"])
                collision = ipam.first_collision(subnet, self._links.claims())
                if collision is not None:
                    raise InvalidSpec(f"network {record['name']!r} cannot come back: its subnet "
                                      f"{subnet} now collides with {collision.owner}")
                self.registry.add(record["bridge"], self.home, record["name"], record["id"],
                                  record["subnet"])
                firewall.remove_tagged({firewall.network_tag(record["id"])})
                self._links.create_bridge(record["bridge"], ipam.gateway_of(subnet),
                                          subnet.prefixlen)
                firewall.apply(firewall.network_rules(
                    record["bridge"], subnet, record["id"], firewall.forward_chain()))

    def _teardown_network(self, bridge: str, network_id: str) -> None:
        firewall.remove_tagged({firewall.network_tag(network_id)})
        self._links.delete(bridge)
        self.registry.remove(bridge)

    def _enable_uplink_forwarding(self) -> list[str]:
        """Per-interface forwarding on default-route interfaces when the host-wide switch is
        off (returning traffic of NATed connections arrives there). Returns the sysctls set."""
        if read_sysctl("/proc/sys/net/ipv4/ip_forward") == "1":
            return []
        changed = []
        for uplink in self._links.uplinks():
            path = f"/proc/sys/net/ipv4/conf/{uplink}/forwarding"
            if read_sysctl(path) != "1":
                write_sysctl(path, "1")
                changed.append(f"net.ipv4.conf.{uplink}.forwarding=1")
        return changed

    # ------------------------------------------------------------------ containers

    def attach(self, container_id: str, name: str, hostname: str, netns_pid: int,
               spec: ContainerSpec, hosts_file: Path) -> Attachment:
        """Connect a container, waiting in its fresh net namespace, to the networks its spec
        names; publish its ports; write its hosts file and its peers'. All or nothing."""
        hosts_file = Path(hosts_file)
        wanted = requested_networks(spec)
        if not wanted:
            if spec.network_mode == "host" and not spec.networks:
                hosts.write_in_place(hosts_file, hosts.host_hosts_text())
            else:
                rtnl.configure_netns(netns_pid, [], None)
                hosts.write_in_place(hosts_file, hosts.render([("127.0.0.1", [hostname])]))
            return Attachment(ips={}, ports={})
        _check_ports(spec.ports)
        self._require_privileges()
        if container_id in self._reservations or self.store.endpoint(container_id) is not None:
            raise ConflictError(f"container {container_id[:12]} is already attached")
        try:
            published = self._reserve_ports(container_id, spec.ports)
            endpoint = self._claim_addresses(container_id, name, hostname, wanted, hosts_file,
                                             published)
        except BaseException:
            self._release_ports(container_id)
            raise
        rules = None
        try:
            self._ensure_bridges(endpoint)
            if self.publish == "dnat":  # iptables-restore runs while the links are made
                rules = self._publish(endpoint, spec.ports, published)
            self._wire(endpoint, netns_pid)
            if self.publish == "relay":
                self._relay(container_id, netns_pid, spec.ports)
            with self.store.lock:
                self._refresh_hosts({n["network"] for n in endpoint["networks"]},
                                    also=frozenset({container_id}))
            if rules is not None:
                rules.wait()
        except BaseException:
            if rules is not None:  # finished before the undo, so no rule lands after it
                with contextlib.suppress(OSError):
                    rules.wait()
            self.detach(container_id)
            raise
        nets = endpoint["networks"]
        return Attachment(
            ips={n["network"]: n["ip"] for n in nets},
            ports={key: [(ip, port) for ip, port in pairs] for key, pairs in published.items()},
            gateway={n["network"]: n["gateway"] for n in nets},
            macs={n["network"]: n["mac"] for n in nets},
            prefixlen={n["network"]: n["prefixlen"] for n in nets},
        )

    def _claim_addresses(self, container_id: str, name: str, hostname: str,
                         wanted: list[NetworkAttachment], hosts_file: Path,
                         published: dict[str, list[tuple[str, int]]]) -> Record:
        """Record the endpoint and take one address per network, in one locked step."""
        while True:
            with self.store.lock:
                records = [self.store.network(w.network) for w in wanted]
                missing = [w.network for w, r in zip(wanted, records) if r is None]
                if not missing:
                    return self._record_endpoint(container_id, name, hostname, wanted,
                                                 records, hosts_file,  # type: ignore[arg-type]
                                                 published)
            named = [m for m in missing if m != DEFAULT_NETWORK]
            if named:
                raise NetworkNotFound(f"network {named[0]!r} not found")
            try:
                self._create(DEFAULT_NETWORK, None, None)
            except ConflictError:
                pass  # another process made it first

    def _record_endpoint(self, container_id: str, name: str, hostname: str,
                         wanted: list[NetworkAttachment], records: list[Record],
                         hosts_file: Path, published: dict[str, list[tuple[str, int]]]) -> Record:
        if self.store.endpoint(container_id) is not None:
            raise ConflictError(f"container {container_id[:12]} is already attached")
        endpoint: Record = {"id": container_id, "name": name, "hosts_file": str(hosts_file),
                            "networks": [], "ports": published, "publish": self.publish}
        for index, (want, record) in enumerate(zip(wanted, records)):
            subnet = IPv4Network(record["subnet"])
            used = [m["ip"] for m in record["members"].values()]
            ip = ipam.allocate_address(subnet, used, record["name"])
            endpoint["networks"].append({
                "network": record["name"], "network_id": record["id"],
                "bridge": record["bridge"], "veth": veth_name(container_id, index),
                "ifname": f"eth{index}", "ip": str(ip), "prefixlen": subnet.prefixlen,
                "gateway": record["gateway"], "mac": ipam.mac_for(ip),
            })
            record["members"][container_id] = {
                "ip": str(ip), "name": name, "hostname": hostname,
                "aliases": list(want.aliases), "hosts_file": str(hosts_file),
            }
        self.store.save_endpoint(endpoint)
        for record in records:
            self.store.save_network(record)
        return endpoint

    def _wire(self, endpoint: Record, pid: int) -> None:
        for net in endpoint["networks"]:
            rtnl.add_veth(net["veth"], net["bridge"], pid, net["ifname"], net["mac"])
        rtnl.configure_netns(
            pid, [(n["ifname"], IPv4Address(n["ip"]), n["prefixlen"]) for n in endpoint["networks"]],
            IPv4Address(endpoint["networks"][0]["gateway"]))

    def _reserve_ports(self, container_id: str,
                       ports: list[PortSpec]) -> dict[str, list[tuple[str, int]]]:
        """Hold a host port per published port (in this process, so a crash frees them)."""
        published: dict[str, list[tuple[str, int]]] = {}
        if ports:
            with self._mutex:
                reservation = self._reservations.setdefault(container_id, Reservation())
            for port in ports:
                host_port = reserve(port, reservation)
                published.setdefault(port.key, []).append((port.host_ip or "0.0.0.0", host_port))
        return published

    def _relay(self, container_id: str, pid: int, ports: list[PortSpec]) -> None:
        """Relay every reserved host port into the container, from a thread of this process."""
        if not ports:
            return
        with self._mutex:
            sockets = self._reservations[container_id].sockets
        relay = PortRelay(pid, list(zip(sockets, ports)))
        relay.start()
        with self._mutex:
            self._relays[container_id] = relay

    def _publish(self, endpoint: Record, ports: list[PortSpec],
                 published: dict[str, list[tuple[str, int]]]) -> firewall.Pending | None:
        """Start the DNAT of every reserved host port to the container's first address, as
        one transaction; the caller waits for it."""
        if not ports:
            return None
        first = endpoint["networks"][0]
        needs_chain = any(not IPv4Address(p.host_ip or "0.0.0.0").is_loopback for p in ports)
        chain = firewall.forward_chain() if needs_chain else ""
        taken = {key: list(pairs) for key, pairs in published.items()}
        rules = []
        for port in ports:
            _, host_port = taken[port.key].pop(0)
            rules.append(firewall.port_rules(port, host_port, IPv4Address(first["ip"]),
                                             first["bridge"], endpoint["id"], chain))
        return firewall.start_apply(firewall.merge(*rules))

    def detach(self, container_id: str) -> None:
        """Undo an attachment: port rules, reserved ports, veths, addresses, hosts entries.
        Idempotent; a container never attached is a no-op."""
        with self.store.lock:
            endpoint = self.store.endpoint(container_id)
        if endpoint is None:
            self._release_ports(container_id)
            return
        dnat = bool(endpoint["ports"]) and endpoint.get("publish") != "relay"
        saved = firewall.start_save() if dnat else None  # runs while the veths go
        for net in endpoint["networks"]:
            self._links.delete(net["veth"])
        if saved is not None:
            firewall.remove_tagged({firewall.container_tag(container_id)}, saved)
            if any(key.endswith("/udp") for key in endpoint["ports"]):
                conntrack.forget_flows(endpoint["networks"][0]["ip"])
        self._release_ports(container_id)
        with self.store.lock:
            self._forget({container_id})

    def _release_ports(self, container_id: str) -> None:
        with self._mutex:
            relay = self._relays.pop(container_id, None)
            reservation = self._reservations.pop(container_id, None)
        if relay is not None:
            relay.stop()
        if reservation is not None:
            reservation.release()

    def _forget(self, container_ids: set[str]) -> list[str]:
        """Drop the containers' addresses and endpoint records, then rewrite the hosts files of
        whoever shared a network with them. Caller holds the store lock."""
        touched, freed = set(), []
        for record in self.store.networks():
            gone = container_ids & record["members"].keys()
            if gone:
                for cid in gone:
                    freed.append(f"{record['members'][cid]['ip']} on {record['name']}")
                    del record["members"][cid]
                self.store.save_network(record)
                touched.add(record["name"])
        for cid in container_ids:
            self.store.delete_endpoint(cid)
        self._refresh_hosts(touched)
        return freed

    def _refresh_hosts(self, network_names: set[str], also: frozenset[str] = frozenset()) -> None:
        """Rewrite the hosts files that a change of these networks' members alters: every
        member's of a named one among them (the default network resolves no names, so its
        members' files do not change), and those of the containers in `also`. Caller holds
        the lock."""
        changed = network_names - {DEFAULT_NETWORK}
        memberships: dict[str, list[tuple[Record, dict[str, Any]]]] = {}
        for record in self.store.networks():
            for cid, member in record["members"].items():
                memberships.setdefault(cid, []).append((record, member))
        for cid, joined in memberships.items():
            if cid not in also and not changed & {r["name"] for r, _ in joined}:
                continue
            entries = []
            for record, member in joined:
                entries.append((member["ip"], [member["hostname"], member["name"],
                                               *member["aliases"], cid[:12]]))
            for record, _ in joined:
                if record["name"] == DEFAULT_NETWORK:
                    continue  # as in Docker, the default network resolves no names
                for peer_id, peer in record["members"].items():
                    if peer_id != cid:
                        entries.append((peer["ip"], [peer["name"], *peer["aliases"],
                                                     peer_id[:12]]))
            hosts_file = Path(joined[0][1]["hosts_file"])
            if hosts_file.parent.is_dir():
                hosts.write_in_place(hosts_file, hosts.render(entries))

    # ------------------------------------------------------------------ leftovers

    def sweep(self, live_container_ids: set[str]) -> list[str]:
        """Remove every attachment of a container not in the set (veths, rules, addresses,
        hosts entries); unused networks whose creating process is dead (unless created with
        the persistent label); bridges whose home is gone. Returns one line per thing cleaned."""
        cleaned: list[str] = []
        with self.store.lock:
            dead = [e for e in self.store.endpoints() if e["id"] not in live_container_ids]
            stray = {cid for r in self.store.networks() for cid in r["members"]
                     if cid not in live_container_ids}
        dead_ids = {e["id"] for e in dead} | stray
        if dead_ids:
            rules = firewall.remove_tagged({firewall.container_tag(c) for c in dead_ids})
            if rules:
                cleaned.append(f"{rules} iptables rules of dead containers")
            for endpoint in dead:
                if any(key.endswith("/udp") for key in endpoint["ports"]):
                    conntrack.forget_flows(endpoint["networks"][0]["ip"])
                self._release_ports(endpoint["id"])
                for net in endpoint["networks"]:
                    if self._links.delete(net["veth"]):
                        cleaned.append(f"veth {net['veth']} of container {endpoint['id'][:12]}")
            with self.store.lock:
                cleaned += [f"address {a}" for a in self._forget(dead_ids)]
        if not _host_root():
            return cleaned
        for record in self.store.networks():
            owner = ProcessIdentity.load(record.get("owner"))
            if owner is None or owner.alive() or record["members"]:
                continue
            try:
                self._remove_network(record["name"])
            except (NetworkNotFound, ConflictError):  # gone, or joined meanwhile
                continue
            cleaned.append(f"network {record['name']} of dead process {owner.pid}")
        with self.registry.lock:
            for entry in self.registry.orphans():
                self._teardown_network(entry["bridge"], entry["id"])
                cleaned.append(f"bridge {entry['bridge']} of network {entry['name']} "
                               f"(its home {entry['home']} no longer has it)")
        return cleaned
