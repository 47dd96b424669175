"""Networks of the native engine: bridges, container attachments, published ports, names.

`NetworkManager` is what the runtime calls. Guarantees:
- safe across processes sharing one home (an flock around each state change; state files
  written whole under new names) and across homes on one host (subnets chosen under a
  host-wide lock);
- an attachment either completes or is undone; what a crash leaves, `sweep` removes, because
  the endpoint record is written before any veth, rule or port exists;
- every rule carries its owner's tag and goes with its owner: a network's iptables rules
  (`firewall`) with the network, a container's nftables DNAT rules (`nft`) with the container;
- a detached container's veth may outlive the detach by some milliseconds (the kernel
  deletes it with the namespace, or a thread of this process does): its address is not
  handed out again until it is gone;
- a network belongs to the process that made it (unless labelled persistent, as the CLI's are):
  once that process is dead and no container uses it, the sweep removes it, from any home.
- `connect`/`disconnect` change a running container's endpoint record in place (one more or
  one fewer network entry: its veth, address and hosts entries), so what `detach` and the
  sweep undo is always the container's whole attachment;
- an internal network (`--internal`) forwards nothing in or out of its bridge and masquerades
  nothing; its containers get no default route through it.

The start path costs some milliseconds: one flock, two small new files, two rtnetlink
batches (veth; addresses and route in the container), one nftables transaction, the hosts
file. No process is spawned and no file is replaced.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
import time
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
from pytest_isobox.engine import records as seam_records  # (`Record` here is the store's)
from pytest_isobox.native.network import conntrack, firewall, hosts, ipam, nft, rtnl
from pytest_isobox.native.network.links import (
    Links,
    bridge_name,
    read_sysctl,
    veth_name,
    write_sysctl,
)
from pytest_isobox.native.network.ports import Reservation, reserve
from pytest_isobox.native.network.records import DEFAULT_NETWORK
from pytest_isobox.native.network.records import network_info as _info
from pytest_isobox.native.network.relay import PortRelay
from pytest_isobox.native.network.store import HostRegistry, NetworkStore, Record
from pytest_isobox.native.specs import network_kind
from pytest_isobox.processes import ProcessIdentity

SPECIAL_MODES = ("none", "host")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@seam_records.record
class Attachment(seam_records.Record):
    """What a container got: per network its address, gateway, MAC and prefix length, and per
    published port (`8080/tcp`) the host addresses it answers on."""

    ips: dict[str, str]
    ports: dict[str, list[tuple[str, int]]]
    gateway: dict[str, str] = seam_records.factory(dict)
    macs: dict[str, str] = seam_records.factory(dict)
    prefixlen: dict[str, int] = seam_records.factory(dict)


@seam_records.record
class Prepared(seam_records.Record):
    """An attachment between `NetworkManager.prepare_attach` and `finish_attach`: its
    endpoint record (None for a container on no network) and reserved host ports."""

    container_id: str
    hostname: str
    spec: ContainerSpec
    hosts_file: Path
    endpoint: Record | None = None
    published: dict[str, list[tuple[str, int]]] = seam_records.factory(dict)


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
        """Done with networking in this process: the veths of detached containers are gone,
        the default network goes if no container uses it (the next attach makes it again),
        and the netlink socket is closed. Named networks stay; published ports stay reserved
        until their container's detach."""
        self.settle()
        if self.default_network_unused():
            self.destroy_all_if_unused()
        self._links.close()

    def hand_off(self) -> dict:
        """Instead of `close`, for a process that exits at once (a CLI command): what `close`
        would wait for, left to another process (the run reaper) with `finish_close`: the
        veths still going away, and whether the default network is to go if still unused."""
        return {"links": self._links.unsettled(),
                "default_network": self.default_network_unused()}

    def finish_close(self, work: dict) -> None:
        """Finish what another process's `hand_off` left: delete those links, then close as
        that process would have (the default network goes if no container uses it now)."""
        links = work.get("links") or {}
        with contextlib.suppress(OSError):  # (a sweep finds what could not go)
            self._links.settle_handed(links.get("left", []), links.get("queued", []))
        if work.get("default_network") and self.default_network_unused():
            self.destroy_all_if_unused()

    def default_network_unused(self) -> bool:
        """Whether the default network exists with no container on it: read without a lock
        (records are written whole), so that a process whose default network others use
        takes no host-wide lock at its close; `destroy_all_if_unused` checks again, locked."""
        record = self.store.network(DEFAULT_NETWORK)
        return record is not None and not record["members"]

    def _require_privileges(self) -> None:
        """Root-only steps ahead (host bridges, iptables); a rootless subclass needs none."""
        require_host_privileges()

    # ------------------------------------------------------------------ networks

    def create(self, name: str, *, subnet: str | None = None,
               labels: dict[str, str] | None = None, gateway: str | None = None,
               internal: bool = False) -> NetworkInfo:
        """A new network: its bridge, its subnet (ours unless given), its rules. It belongs to
        this process (a sweep removes it, unused, once the process is dead) unless its labels
        hold PERSISTENT_LABEL=1 (then only `remove` does, as in Docker). `gateway`: the
        bridge's address (the subnet's first host unless given); `internal`: no way out."""
        if not _NAME.fullmatch(name) or name in SPECIAL_MODES:
            raise InvalidSpec(f"invalid network name {name!r}: use letters, digits, '_', '.', '-'")
        if name == DEFAULT_NETWORK:
            raise ConflictError("'bridge' is the default network: choose another name")
        options = {k: v for k, v in (("gateway", gateway), ("internal", internal)) if v}
        return self._create(name, subnet, labels, **options)

    def _create(self, name: str, subnet: str | None, labels: dict[str, str] | None,
                **options: Any) -> NetworkInfo:
        self._require_privileges()
        with self.registry.lock, self.store.lock:
            claims = [
                ipam.Claim(IPv4Network(e["subnet"]), f"isobox network {e['name']} ({e['bridge']})")
                for e in self.registry.entries()
            ]
            record = self._new_record(name, subnet, labels, claims, **options)
            record["rules_version"] = firewall.RULES_VERSION
            net, network_id = IPv4Network(record["subnet"]), record["id"]
            try:
                self._links.create_bridge(record["bridge"], IPv4Address(record["gateway"]),
                                          net.prefixlen)
                firewall.apply(firewall.network_rules(
                    record["bridge"], net, network_id, firewall.forward_chain(),
                    internal=bool(record.get("internal"))))
                record["host_sysctls"] = self._enable_uplink_forwarding()
                self.store.save_network(record)
            except BaseException:
                self._teardown_network(record["bridge"], network_id)
                raise
        return _info(record)

    def _new_record(self, name: str, subnet: str | None, labels: dict[str, str] | None,
                    claims: list[ipam.Claim], *, gateway: str | None = None,
                    internal: bool = False) -> Record:
        """A new network's record with a subnet colliding with none of `claims`, host routes
        or Docker's pools, registered host-wide. Caller holds the registry and store locks."""
        if self.store.network(name) is not None:
            raise ConflictError(f"network {name!r} already exists")
        if gateway is not None and subnet is None:
            raise InvalidSpec(f"--gateway {gateway}: needs --subnet")
        claims = claims + self._links.claims() + ipam.docker_pool_claims()
        net = ipam.parse_subnet(subnet, claims) if subnet else ipam.pick_subnet(claims)
        address = ipam.parse_gateway(gateway, net) if gateway else ipam.gateway_of(net)
        network_id = os.urandom(32).hex()
        record: Record = {
            "name": name, "id": network_id, "bridge": bridge_name(network_id),
            "subnet": str(net), "gateway": str(address),
            "labels": dict(labels or {}), "created": time.time(), "members": {},
            "host_sysctls": [],
            # the process whose death makes the network sweepable (None: persistent)
            "owner": None if (labels or {}).get(PERSISTENT_LABEL) == "1"
            else ProcessIdentity.current().dump(),
        }
        if internal:
            record["internal"] = True
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

    def _remove_network(self, name: str, store: NetworkStore | None = None) -> None:
        """Remove a network of this home (or of `store`'s) that nobody is attached to."""
        self._require_privileges()
        store = store or self.store
        with self.registry.lock, store.lock:
            record = store.network(name)
            if record is None:
                raise NetworkNotFound(f"network {name!r} not found")
            if record["members"]:
                names = ", ".join(m["name"] for m in record["members"].values())
                raise ConflictError(f"network {name!r} has containers attached: {names}")
            self._teardown_network(record["bridge"], record["id"])
            store.delete_network(name)

    def _ensure_bridges(self, endpoint: Record) -> None:
        """Bring back the bridge (and rules) of a network whose bridge is gone, as after a
        reboot: records in the home outlive the interfaces and rules of the host."""
        for net in endpoint["networks"]:
            if self._links.index(net["bridge"]) is not None:
                continue
            with self.registry.lock:
                if self._links.index(net["bridge"]) is not None:
                    continue
                record = self.store.network(net["network"], members=False)
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
                self._links.create_bridge(record["bridge"], IPv4Address(record["gateway"]),
                                          subnet.prefixlen)
                firewall.apply(firewall.network_rules(
                    record["bridge"], subnet, record["id"], firewall.forward_chain(),
                    internal=bool(record.get("internal"))))

    def _teardown_network(self, bridge: str, network_id: str) -> None:
        """A network's rules and bridge, and its registration; with the last network on
        this host, our nftables table too. Caller holds the registry lock."""
        firewall.remove_tagged({firewall.network_tag(network_id)})
        self._links.delete(bridge)
        self.registry.remove(bridge)
        if not self.registry.entries():
            nft.remove_table()

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

    def prepare(self, spec: ContainerSpec) -> None:
        """Make the default network now if `spec`'s attach will need it and it does not exist
        (a session's first container): the caller has a moment to spare (the container
        setting itself up in another process), which `attach` would otherwise spend on it.
        A spec `attach` would refuse is left for it to say what is wrong."""
        try:
            wanted = requested_networks(spec)
        except InvalidSpec:
            return
        if all(w.network != DEFAULT_NETWORK for w in wanted) or not _host_root() \
                or self.store.network(DEFAULT_NETWORK, members=False) is not None:
            return
        with contextlib.suppress(ConflictError):  # another process made it first
            self._create(DEFAULT_NETWORK, None, None)

    def attach(self, container_id: str, name: str, hostname: str, netns_pid: int,
               spec: ContainerSpec, hosts_file: Path) -> Attachment:
        """Connect a container, waiting in its fresh net namespace, to the networks its spec
        names; publish its ports; write its hosts file and its peers'. All or nothing."""
        prepared = self.prepare_attach(container_id, name, hostname, spec, hosts_file,
                                       netns_pid)
        return self.finish_attach(prepared, netns_pid)

    def prepare_attach(self, container_id: str, name: str, hostname: str,
                       spec: ContainerSpec, hosts_file: Path, netns_pid: int | None = None,
                       ) -> Prepared:
        """`attach`'s first half, which needs no network namespace yet (so it can overlap
        the container's setup): host ports reserved, addresses claimed (the endpoint
        recorded, with its holder `netns_pid` when known already), bridges there. Undone by
        `detach`; `finish_attach` does the rest."""
        prepared = Prepared(container_id, hostname, spec, Path(hosts_file))
        wanted = requested_networks(spec)
        if not wanted:
            return prepared
        _check_ports(spec.ports)
        self._require_privileges()
        if container_id in self._reservations:  # (the endpoint record is checked when made)
            raise ConflictError(f"container {container_id[:12]} is already attached")
        try:
            prepared.published = self._reserve_ports(container_id, spec.ports)
            prepared.endpoint = self._claim_addresses(
                container_id, name, hostname, wanted, prepared.hosts_file, prepared.published,
                netns_pid, spec)
        except BaseException:
            self._release_ports(container_id)
            raise
        try:
            self._ensure_bridges(prepared.endpoint)
        except BaseException:
            self.detach(container_id)
            raise
        return prepared

    def finish_attach(self, prepared: Prepared, netns_pid: int) -> Attachment:
        """`attach`'s second half, in the container's network namespace (`netns_pid`'s).
        An endpoint prepared without its pid gets it with `record_holder`, afterwards."""
        spec, hosts_file, endpoint = prepared.spec, prepared.hosts_file, prepared.endpoint
        if endpoint is None:
            extra = hosts.extra_entries(spec.extra_hosts, "127.0.0.1")
            if network_kind(spec) == "host":
                hosts.write_in_place(hosts_file, hosts.host_hosts_text() + hosts.render(
                    extra, localhost=False))
            else:
                self._configure(netns_pid, [], None, loopback=True)  # lo alone
                hosts.write_in_place(hosts_file, hosts.render(
                    [*extra, ("127.0.0.1", [prepared.hostname])]))
            return Attachment(ips={}, ports={})
        container_id, published = prepared.container_id, prepared.published
        try:
            self._wire(endpoint, netns_pid)
            if self.publish == "dnat":
                self._publish(endpoint, spec.ports, published)
            else:
                self._relay(container_id, netns_pid, spec.ports)
            named = {n["network"] for n in endpoint["networks"]} - {DEFAULT_NETWORK}
            if named:
                with self.store.lock:
                    self._refresh_hosts(self.store, named, also={container_id: endpoint})
            else:  # the default network resolves no names: only this container's file
                self._write_hosts(endpoint)
        except BaseException:
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

    def record_holder(self, prepared: Prepared, netns_pid: int) -> None:
        """Record `netns_pid` as the holder of the network namespace of an endpoint that was
        prepared without it (see `_holder_dead`): off the start's path, as it replaces the
        record. Until then it counts as alive."""
        endpoint = prepared.endpoint
        if endpoint is None or endpoint["holder"] is not None:
            return
        holder = ProcessIdentity.of(netns_pid)
        with self.store.lock:
            if holder is None or self.store.endpoint(prepared.container_id) is None:
                return  # ended or detached meanwhile
            endpoint["holder"] = holder.dump()
            self.store.save_endpoint(endpoint)

    def connect(self, container_id: str, name: str, hostname: str, netns_pid: int,
                want: NetworkAttachment, hosts_file: Path, *, ip: str | None = None) -> Record:
        """`network connect` of a running container: one more veth on the network's bridge,
        an address on it (a default route too when the container had no way out) and the
        hosts files of everyone on the network rewritten. All or nothing; returns the new
        network entry of the endpoint record (ip, gateway, mac, prefixlen, ifname)."""
        self._require_privileges()
        with self.store.lock:
            record = self.store.network(want.network, members=False)
            if record is None:
                raise NetworkNotFound(f"network {want.network!r} not found")
            endpoint = self.store.endpoint(container_id)
            fresh = endpoint is None
            if endpoint is None:  # disconnected from every network earlier
                holder = ProcessIdentity.of(netns_pid)
                endpoint = {"id": container_id, "name": name, "hostname": hostname,
                            "hosts_file": str(hosts_file), "networks": [], "ports": {},
                            "publish": self.publish, "rules": "nft", "holder": holder.dump()}
            if any(n["network"] == record["name"] for n in endpoint["networks"]):
                raise ConflictError(f"endpoint with name {name} already exists in network "
                                    f"{record['name']}")
            index = endpoint.get("next_index") or 1 + max(
                (int(n["ifname"][3:]) for n in endpoint["networks"]), default=-1)
            subnet = IPv4Network(record["subnet"])
            taken = self._taken(record)
            ip = ipam.claim_address(subnet, taken, record["name"], ip, record["gateway"]) \
                if ip else ipam.allocate_address(subnet, taken, record["name"], record["gateway"])
            had_route = _default_gateway(endpoint["networks"]) is not None
            net: Record = {
                "network": record["name"], "network_id": record["id"],
                "bridge": record["bridge"], "veth": veth_name(container_id, index),
                "ifname": f"eth{index}", "ip": str(ip), "prefixlen": subnet.prefixlen,
                "gateway": record["gateway"], "mac": ipam.mac_for(ip),
                "aliases": list(want.aliases), "rules_version": record.get("rules_version", 1),
                **({"internal": True} if record.get("internal") else {}),
            }
            endpoint["networks"].append(net)
            endpoint["next_index"] = index + 1
            if fresh:
                self.store.create_endpoint(endpoint)
            else:
                self.store.save_endpoint(endpoint)
            self.store.add_member(record["name"], {
                "id": container_id, "ip": str(ip), "name": name, "hostname": hostname,
                "aliases": list(want.aliases), "hosts_file": str(hosts_file)})
        try:
            self._ensure_bridges({"networks": [net]})
            self._add_veth(net, netns_pid)
            gateway = None if had_route or net.get("internal") else IPv4Address(net["gateway"])
            self._configure(netns_pid, [(net["ifname"], ip, subnet.prefixlen)], gateway)
            with self.store.lock:
                self._refresh_hosts(self.store, {record["name"]},
                                    also={container_id: endpoint})
        except BaseException:
            self.disconnect(container_id, record["name"], netns_pid)
            raise
        return net

    def disconnect(self, container_id: str, network: str, netns_pid: int | None) -> bool:
        """`network disconnect` of a running container: its veth on that network goes (and
        its address, and its name from the others' hosts files); when that network held the
        default route, the next one with a way out takes it. False when the container was
        not on that network. Published ports lead to the first network's address: leaving
        it unpublishes them, as Docker does (their rules go; the host ports, held by the
        process that started the container, are free when it ends)."""
        with self.store.lock:
            endpoint = self.store.endpoint(container_id)
            nets = endpoint["networks"] if endpoint else []
            net = next((n for n in nets if n["network"] == network), None)
            if endpoint is None or net is None:
                return False
            if endpoint["ports"] and net is nets[0] and endpoint.get("publish") != "relay":
                self._remove_port_rules([endpoint])
                self._release_ports(container_id)
                endpoint["ports"] = {}
            was_route = _default_gateway(nets) is net
            nets.remove(net)
            endpoint["next_index"] = endpoint.get("next_index") or 1 + max(
                (int(n["ifname"][3:]) for n in [*nets, net]), default=-1)
            self.store.save_endpoint(endpoint)
        self._links.delete(net["veth"])  # the address is free once its veth is gone
        with self.store.lock:
            self.store.remove_address(network, net["ip"], container_id)
            self._refresh_hosts(self.store, {network}, also={container_id: endpoint})
        successor = _default_gateway(nets)
        if was_route and successor is not None and netns_pid:
            with contextlib.suppress(FileExistsError):  # a route of its own already
                self._configure(netns_pid, [], IPv4Address(successor["gateway"]))
        return True

    def _claim_addresses(self, container_id: str, name: str, hostname: str,
                         wanted: list[NetworkAttachment], hosts_file: Path,
                         published: dict[str, list[tuple[str, int]]],
                         netns_pid: int | None = None,
                         spec: ContainerSpec | None = None) -> Record:
        """Record the endpoint and take one address per network, in one locked step."""
        while True:
            with self.store.lock:
                records = [self.store.network(w.network, members=False) for w in wanted]
                missing = [w.network for w, r in zip(wanted, records) if r is None]
                if not missing:
                    return self._record_endpoint(container_id, name, hostname, wanted,
                                                 records, hosts_file,  # type: ignore[arg-type]
                                                 published, netns_pid, spec)
            named = [m for m in missing if m != DEFAULT_NETWORK]
            if named:
                raise NetworkNotFound(f"network {named[0]!r} not found")
            try:
                self._create(DEFAULT_NETWORK, None, None)
            except ConflictError:
                pass  # another process made it first

    def _record_endpoint(self, container_id: str, name: str, hostname: str,
                         wanted: list[NetworkAttachment], records: list[Record],
                         hosts_file: Path, published: dict[str, list[tuple[str, int]]],
                         netns_pid: int | None, spec: ContainerSpec | None = None) -> Record:
        """The endpoint record first (what a sweep undoes), then one member file per address.
        The spec's --ip is the first network's address, its --add-host lines are kept for
        the hosts file. Caller holds the store lock."""
        holder = ProcessIdentity.of(netns_pid) if netns_pid else None
        endpoint: Record = {"id": container_id, "name": name, "hostname": hostname,
                            "hosts_file": str(hosts_file), "networks": [], "ports": published,
                            "publish": self.publish, "rules": "nft",
                            "holder": holder.dump() if holder else None}
        members = []
        for index, (want, record) in enumerate(zip(wanted, records)):
            subnet = IPv4Network(record["subnet"])
            used = self._taken(record)
            asked = want.ip or (spec.ip if index == 0 and spec is not None else None)
            if asked:
                if record["name"] == DEFAULT_NETWORK:
                    raise InvalidSpec("user specified IP address is supported on user defined "
                                      "networks only")
                ip = ipam.claim_address(subnet, used, record["name"], asked, record["gateway"])
            else:
                ip = ipam.allocate_address(subnet, used, record["name"], record["gateway"])
            endpoint["networks"].append({
                "network": record["name"], "network_id": record["id"],
                "bridge": record["bridge"], "veth": veth_name(container_id, index),
                "ifname": f"eth{index}", "ip": str(ip), "prefixlen": subnet.prefixlen,
                "gateway": record["gateway"], "mac": ipam.mac_for(ip),
                "aliases": list(want.aliases), "rules_version": record.get("rules_version", 1),
                **({"internal": True} if record.get("internal") else {}),
            })
            members.append((record["name"], {
                "id": container_id, "ip": str(ip), "name": name, "hostname": hostname,
                "aliases": list(want.aliases), "hosts_file": str(hosts_file),
            }))
        if spec is not None and spec.extra_hosts:
            endpoint["extra_hosts"] = hosts.extra_entries(
                spec.extra_hosts, endpoint["networks"][0]["gateway"])
        if not self.store.create_endpoint(endpoint):
            raise ConflictError(f"container {container_id[:12]} is already attached")
        for network, member in members:
            self.store.add_member(network, member)
        return endpoint

    def _taken(self, record: Record) -> set[str]:
        """Addresses not to hand out on a network: its members', and those whose old veth
        is still going away (its host's neighbour and bridge entries would point a new
        container's traffic at the old one). Caller holds the store lock."""
        taken, leaving = self.store.addresses(record["name"])
        taken |= {m["ip"] for m in record["members"].values()}
        taken |= {ip for ip, veth in leaving.items() if self._links.index(veth) is not None}
        return taken

    def _wire(self, endpoint: Record, pid: int) -> None:
        for net in endpoint["networks"]:
            self._add_veth(net, pid)
        gateway = _default_gateway(endpoint["networks"])
        rtnl.configure_netns(
            pid, [(n["ifname"], IPv4Address(n["ip"]), n["prefixlen"]) for n in endpoint["networks"]],
            IPv4Address(gateway["gateway"]) if gateway else None)

    def _configure(self, pid: int, interfaces: list[tuple[str, IPv4Address, int]],
                   gateway: IPv4Address | None, *, loopback: bool = False) -> None:
        """Inside a container's netns: addresses, maybe a default route, lo up if asked (a
        running container's is up already). The rootless manager does it from the helper
        netns."""
        rtnl.configure_netns(pid, interfaces, gateway, loopback=loopback)

    def _add_veth(self, net: Record, pid: int) -> None:
        try:
            rtnl.add_veth(net["veth"], net["bridge"], pid, net["ifname"], net["mac"])
        except FileExistsError:
            # the container's previous start: its veth (named from the container's id)
            # is still going away after a stop (queued for deletion, or left to the
            # kernel with the old namespace); once those are done, the name is free or
            # else a leftover of that start, which nothing else is ever given
            self._links.settle()
            self._links.delete(net["veth"])
            rtnl.add_veth(net["veth"], net["bridge"], pid, net["ifname"], net["mac"])

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
                 published: dict[str, list[tuple[str, int]]]) -> None:
        """DNAT every reserved host port to the container's first address, as one
        transaction."""
        if not ports:
            return
        first = endpoint["networks"][0]
        if first.get("rules_version", 1) < firewall.RULES_VERSION and any(
                not IPv4Address(p.host_ip or "0.0.0.0").is_loopback for p in ports):
            self._upgrade_network_rules(first["network"], first["network_id"])
        taken = {key: list(pairs) for key, pairs in published.items()}
        pairs = [(port, taken[port.key].pop(0)[1]) for port in ports]
        nft.publish(pairs, IPv4Address(first["ip"]), endpoint["id"], first["network_id"])

    def _upgrade_network_rules(self, name: str, network_id: str) -> None:
        """Give a network made by an older version the forwarding rule that lets connections
        from outside reach its published ports beside dockerd (once per network)."""
        with self.registry.lock:
            record = self.store.network(name, members=False)
            if record is None or record["id"] != network_id \
                    or record.get("rules_version", 1) >= firewall.RULES_VERSION:
                return
            rule = firewall.dnat_accept(record["bridge"], network_id)
            firewall.apply({"filter": [f"-I {firewall.forward_chain()} 1 {rule}"]})
            with self.store.lock:
                self.store.update_network(name, rules_version=firewall.RULES_VERSION)

    def detach(self, container_id: str) -> None:
        """Undo an attachment: port rules, reserved ports, addresses, hosts entries, veths.
        Idempotent; a container never attached is a no-op.

        Deleting a veth takes the kernel some 25 ms, so detach does not wait for it: when
        the container has ended, its veths go with its network namespace; else a thread of
        this process deletes them. Until each is gone its address is not handed out again
        (see `_taken`), and a sweep deletes any that a process ending first left."""
        with self.store.lock:
            endpoint = self.store.endpoint(container_id)
        if endpoint is None:
            self._release_ports(container_id)
            return
        self._remove_port_rules([endpoint])
        self._release_ports(container_id)
        with self.store.lock:
            self._forget(self.store, {container_id}, [endpoint], leaving=True)
            for net in endpoint["networks"]:  # earlier containers' veths that are gone now
                self._forget_gone_veths(self.store, net["network"])
        for net in endpoint["networks"]:
            if _holder_dead(endpoint):
                self._links.left_to_kernel(net["veth"])
            else:
                self._links.delete_later(net["veth"])

    def settle(self) -> None:
        """Return once the veths of every container this process detached are gone."""
        self._links.settle()

    def _forget_gone_veths(self, store: NetworkStore, network: str) -> None:
        """Free the addresses held for veths that are gone now. Caller holds the store lock."""
        for ip, veth in store.leaving_addresses(network).items():
            if self._links.index(veth) is None:
                store.forget_leaving(network, ip, veth)

    @staticmethod
    def _remove_port_rules(endpoints: list[Record]) -> int:
        """Delete the DNAT rules of these endpoints (and any left by older versions) and
        forget their UDP flows; how many rules went."""
        dnat = [e for e in endpoints if e["ports"] and e.get("publish") != "relay"]
        if not dnat:
            return 0
        removed = nft.remove_tagged({e["id"] for e in dnat})
        legacy = {firewall.container_tag(e["id"]) for e in dnat if e.get("rules") != "nft"}
        if legacy:
            removed += firewall.remove_tagged(legacy)
        for endpoint in dnat:
            if any(key.endswith("/udp") for key in endpoint["ports"]):
                conntrack.forget_flows(endpoint["networks"][0]["ip"])
        return removed

    def _release_ports(self, container_id: str) -> None:
        with self._mutex:
            relay = self._relays.pop(container_id, None)
            reservation = self._reservations.pop(container_id, None)
        if relay is not None:
            relay.stop()
        if reservation is not None:
            reservation.release()

    def _forget(self, store: NetworkStore | set[str], container_ids: set[str] | None = None,
                endpoints: list[Record] | None = None, *, leaving: bool = False) -> list[str]:
        """Drop the containers' addresses and endpoint records, then rewrite the hosts files of
        whoever shared a named network with them. Caller holds the store lock.

        endpoints: their records, when the caller has them (else every network is read).
        leaving: their veths are still going away; their addresses stay taken until then.
        (`_forget(ids)` is the older spelling, on this manager's store.)"""
        if not isinstance(store, NetworkStore):
            store, container_ids = self.store, store
        assert container_ids is not None
        freed: list[str] = []
        touched: set[str] = set()
        if endpoints is not None and all(e.get("rules") == "nft" for e in endpoints):
            for endpoint in endpoints:
                for net in endpoint["networks"]:
                    store.remove_address(net["network"], net["ip"], endpoint["id"],
                                         net["veth"] if leaving else None)
                    freed.append(f"{net['ip']} on {net['network']}")
                    touched.add(net["network"])
        else:
            for record in store.networks():
                for cid in container_ids & record["members"].keys():
                    freed.append(f"{record['members'][cid]['ip']} on {record['name']}")
                    store.remove_member(record, cid)
                    touched.add(record["name"])
        for cid in container_ids:
            store.delete_endpoint(cid)
        self._refresh_hosts(store, touched - {DEFAULT_NETWORK})
        return freed

    def _refresh_hosts(self, store: NetworkStore, network_names: set[str],
                       also: dict[str, Record] | None = None) -> None:
        """Rewrite the hosts files that a change of these named networks' members alters
        (every member's), and those of the containers in `also` (id -> endpoint record).
        Caller holds the store lock."""
        members: dict[str, dict[str, Record]] = {}

        def members_of(network: str) -> dict[str, Record]:
            if network not in members:
                record = store.network(network)
                members[network] = record["members"] if record else {}
            return members[network]

        endpoints = dict(also or {})
        affected = set(endpoints)
        for network in network_names - {DEFAULT_NETWORK}:
            affected |= members_of(network).keys()
        for cid in sorted(affected):
            endpoint = endpoints.get(cid) or store.endpoint(cid)
            if endpoint is not None:
                self._write_hosts(endpoint, members_of)

    @staticmethod
    def _write_hosts(endpoint: Record, members_of: Any = None) -> None:
        """A container's hosts file: its own names on each network, then its peers on each
        named one (the default network resolves no names, as in Docker)."""
        cid = endpoint["id"]
        entries = [(ip, list(names)) for ip, names in endpoint.get("extra_hosts") or ()]
        for net in endpoint["networks"]:
            own: Record = {"hostname": endpoint.get("hostname"), "aliases": net.get("aliases")}
            if own["hostname"] is None or own["aliases"] is None:  # an older version's record
                own = (members_of(net["network"]) if members_of else {}).get(cid, own)
            entries.append((net["ip"], [own.get("hostname") or "", endpoint["name"],
                                        *(own.get("aliases") or []), cid[:12]]))
        for net in endpoint["networks"]:
            if net["network"] == DEFAULT_NETWORK or members_of is None:
                continue
            for peer_id, peer in members_of(net["network"]).items():
                if peer_id != cid:
                    entries.append((peer["ip"], [peer["name"], *peer["aliases"], peer_id[:12]]))
        hosts_file = Path(endpoint["hosts_file"])
        if hosts_file.parent.is_dir():
            hosts.write_in_place(hosts_file, hosts.render(entries))

    # ------------------------------------------------------------------ leftovers

    def sweep(self, live_container_ids: set[str], *, other_homes: bool = True) -> list[str]:
        """Remove every attachment of a container not in the set (veths, rules, addresses,
        hosts entries); unused networks whose creating process is dead (unless created with
        the persistent label); and with `other_homes`, bridges whose home is gone and, in
        other homes, what dead containers and networks left there (see `_sweep_other_homes`).
        Returns one line per thing cleaned."""
        with self.store.lock:
            dead = [e for e in self.store.endpoints() if e["id"] not in live_container_ids]
            stray = {cid for r in self.store.networks() for cid in r["members"]
                     if cid not in live_container_ids}
        cleaned = self._sweep_endpoints(self.store, dead, stray)
        cleaned += self._sweep_leaving(self.store)
        if not _host_root():
            return cleaned
        cleaned += self._sweep_networks(self.store, self.store.networks())
        if not other_homes:
            return cleaned
        with self.registry.lock:
            for entry in self.registry.orphans():
                nft.remove_tagged(network_ids={entry["id"]})
                self._teardown_network(entry["bridge"], entry["id"])
                cleaned.append(f"bridge {entry['bridge']} of network {entry['name']} "
                               f"(its home {entry['home']} no longer has it)")
        cleaned += self._sweep_other_homes()
        return cleaned

    def _sweep_endpoints(self, store: NetworkStore, dead: list[Record],
                         stray: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
        """Undo the attachments of dead containers: rules, ports, veths, then records."""
        dead_ids = {e["id"] for e in dead} | set(stray)
        if not dead_ids:
            return []
        cleaned = []
        rules = self._remove_port_rules(dead)
        if rules:
            cleaned.append(f"{rules} port rules of dead containers")
        for endpoint in dead:
            self._release_ports(endpoint["id"])
            for net in endpoint["networks"]:
                if self._links.delete(net["veth"]):
                    cleaned.append(f"veth {net['veth']} of container {endpoint['id'][:12]}")
        with store.lock:
            cleaned += [f"address {a}" for a in self._forget(store, dead_ids)]
        return cleaned

    def _sweep_leaving(self, store: NetworkStore) -> list[str]:
        """Delete the veths that a detach left to a thread of a process that ended first."""
        cleaned = []
        for record in store.networks(members=False):
            for ip, veth in store.leaving_addresses(record["name"]).items():
                if self._links.delete(veth):
                    cleaned.append(f"veth {veth} of a removed container")
                with store.lock:
                    store.forget_leaving(record["name"], ip, veth)
        return cleaned

    def _sweep_networks(self, store: NetworkStore, records: list[Record]) -> list[str]:
        """Remove the unused networks among `records` whose creating process is dead."""
        cleaned = []
        for record in records:
            owner = ProcessIdentity.load(record.get("owner"))
            if owner is None or owner.alive() or record["members"]:
                continue
            try:
                self._remove_network(record["name"], store)
            except (NetworkNotFound, ConflictError):  # gone, or joined meanwhile
                continue
            cleaned.append(f"network {record['name']} of dead process {owner.pid}")
        return cleaned

    def _sweep_other_homes(self) -> list[str]:
        """What dead runs of other homes left: a home is swept only when it is opened, so a
        home abandoned while a kept container lived would keep its bridges and rules for good.

        In each other home with a bridge on this host: attachments whose container is dead
        (the process holding its network namespace has ended; records of older versions,
        which lack it, are left alone), then networks of that home whose creating process is
        dead and which no container uses. Nothing of a live container or a live process's
        network is touched."""
        cleaned: list[str] = []
        with self.registry.lock:
            entries = self.registry.entries()
        homes: dict[Path, list[Record]] = {}
        for entry in entries:
            home = Path(entry["home"])
            if home != self.home and (home / "networks").is_dir():
                homes.setdefault(home, []).append(entry)
        for home, registered in homes.items():
            store = NetworkStore(home)
            with store.lock:
                dead = [e for e in store.endpoints() if _holder_dead(e)]
            cleaned += self._sweep_endpoints(store, dead)
            cleaned += self._sweep_leaving(store)
            records = [r for r in (store.network(e["name"]) for e in registered)
                       if r is not None and r["id"] in {e["id"] for e in registered}]
            cleaned += [f"{line} (home {home})" for line in self._sweep_networks(store, records)]
        return cleaned


def _default_gateway(networks: list[Record]) -> Record | None:
    """The network whose gateway is the container's default route: the first one that is not
    internal (an internal network has no way out), None when every one is."""
    return next((n for n in networks if not n.get("internal")), None)


def _holder_dead(endpoint: Record) -> bool:
    """Whether the process that held the container's network namespace has ended (False
    when the record does not say which process that was)."""
    holder = ProcessIdentity.load(endpoint.get("holder"))
    return holder is not None and not holder.alive()
