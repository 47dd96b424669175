"""Subnets for networks and addresses for containers, as pure decisions over given facts.

Nothing here touches the host: callers pass the routes and subnets already in use (read under
the locks that make the choice safe across processes) and store the result atomically.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from pytest_isobox.engine import ConflictError, InvalidSpec
from pytest_isobox.engine.records import FrozenRecord, record

# Where automatic subnets come from: far from Docker's pools and common home/office ranges.
POOLS = (IPv4Network("10.213.0.0/16"), IPv4Network("10.214.0.0/16"))
SUBNET_PREFIX = 24

# Docker's default address pools (172.17-31.0.0/16, 192.168.0.0/16 split in /20s).
DOCKER_POOLS = tuple(IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)) + (
    IPv4Network("192.168.0.0/16"),
)


@record
class Claim(FrozenRecord):
    """A prefix somebody uses, and a phrase naming who (`route 192.0.2.0/24 dev eth0`)."""

    network: IPv4Network
    owner: str


def docker_pool_claims() -> list[Claim]:
    return [Claim(pool, f"Docker's address pool {pool}") for pool in DOCKER_POOLS]


def first_collision(subnet: IPv4Network, claims: Iterable[Claim]) -> Claim | None:
    """The first claim that overlaps `subnet`, or None when it is free."""
    for claim in claims:
        if subnet.overlaps(claim.network):
            return claim
    return None


def pick_subnet(claims: list[Claim]) -> IPv4Network:
    """The first /24 of our pools that overlaps no claim."""
    for pool in POOLS:
        for subnet in pool.subnets(new_prefix=SUBNET_PREFIX):
            if first_collision(subnet, claims) is None:
                return subnet
    raise ConflictError(f"no free /{SUBNET_PREFIX} subnet left in {', '.join(map(str, POOLS))}")


def parse_subnet(text: str, claims: list[Claim]) -> IPv4Network:
    """A user's subnet, checked: an IPv4 prefix with room for a gateway and a container."""
    try:
        subnet = IPv4Network(text, strict=False)
    except ValueError:
        raise InvalidSpec(f"invalid subnet {text!r}: expected an IPv4 prefix like 10.0.5.0/24") from None
    if subnet.prefixlen > 29:
        raise InvalidSpec(f"invalid subnet {text!r}: /{subnet.prefixlen} is too small (at most /29)")
    collision = first_collision(subnet, claims)
    if collision is not None:
        raise InvalidSpec(f"subnet {subnet} collides with {collision.owner}")
    return subnet


def gateway_of(subnet: IPv4Network) -> IPv4Address:
    """The bridge's own address: the subnet's first host."""
    return subnet.network_address + 1


def parse_gateway(text: str, subnet: IPv4Network) -> IPv4Address:
    """`--gateway`: a host address of the subnet (the bridge holds it)."""
    try:
        address = IPv4Address(text)
    except ValueError:
        raise InvalidSpec(f"invalid --gateway {text!r}: expected an IPv4 address") from None
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise InvalidSpec(f"invalid --gateway {text}: not a host address of subnet {subnet}")
    return address


def _gateway(subnet: IPv4Network, gateway: str | None) -> IPv4Address:
    return IPv4Address(gateway) if gateway else gateway_of(subnet)


def allocate_address(subnet: IPv4Network, used: Iterable[str], network: str,
                     gateway: str | None = None) -> IPv4Address:
    """The lowest host address that is neither the gateway (`gateway`, else the subnet's
    first host) nor in `used`."""
    taken = {int(IPv4Address(ip)) for ip in used} | {int(_gateway(subnet, gateway))}
    first, last = int(subnet.network_address) + 1, int(subnet.broadcast_address)
    for host in range(first, last):  # every address but the network's and the broadcast
        if host not in taken:
            return IPv4Address(host)
    raise ConflictError(f"network {network!r} has no free address left in {subnet}")


def mac_for(ip: IPv4Address) -> str:
    """Docker's scheme: 02:42 and the four address bytes, so a MAC never changes for an IP."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def claim_address(subnet: IPv4Network, used: Iterable[str], network: str,
                  wanted: str, gateway: str | None = None) -> IPv4Address:
    """`--ip`: the address asked for, if it is a free host address of the subnet."""
    try:
        ip = IPv4Address(wanted)
    except ValueError:
        raise InvalidSpec(f"invalid IPv4 address {wanted!r} for --ip") from None
    if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
        raise InvalidSpec(f"no configured subnet of network {network!r} contains the IP "
                          f"address {ip} ({subnet})")
    if ip == _gateway(subnet, gateway) or str(ip) in set(used):
        raise ConflictError(f"address {ip} is already in use on network {network!r}")
    return ip
