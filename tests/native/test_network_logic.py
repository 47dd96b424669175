"""Pure decisions of the network code, without touching the host: subnet choice, address
allocation, hosts file rendering and in-place rewrite, requested networks, rule text."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from pytest_isobox.engine import (
    ConflictError,
    ContainerSpec,
    InvalidSpec,
    NetworkAttachment,
    PortSpec,
)
from pytest_isobox.native.network import firewall, hosts, ipam, nft
from pytest_isobox.native.network.links import bridge_name, veth_name
from pytest_isobox.native.network.manager import requested_networks
from pytest_isobox.native.network.rtnl import _nla


def claim(prefix: str, owner: str = "route") -> ipam.Claim:
    return ipam.Claim(IPv4Network(prefix), owner)


def test_pick_subnet_skips_claimed_prefixes() -> None:
    assert ipam.pick_subnet([]) == IPv4Network("10.213.0.0/24")
    taken = [claim("10.213.0.0/23"), claim("10.213.2.0/24")]
    assert ipam.pick_subnet(taken) == IPv4Network("10.213.3.0/24")


def test_pick_subnet_moves_to_the_next_pool_and_reports_exhaustion() -> None:
    assert ipam.pick_subnet([claim("10.213.0.0/16")]) == IPv4Network("10.214.0.0/24")
    with pytest.raises(ConflictError, match="no free /24"):
        ipam.pick_subnet([claim("10.213.0.0/16"), claim("10.214.0.0/16")])


def test_automatic_pools_avoid_dockers_pools() -> None:
    for pool in ipam.POOLS:
        assert ipam.first_collision(pool, ipam.docker_pool_claims()) is None


def test_parse_subnet_names_what_it_collides_with() -> None:
    claims = [claim("192.0.2.0/24", "route 192.0.2.0/24 dev eth0"), *ipam.docker_pool_claims()]
    with pytest.raises(InvalidSpec, match=r"192\.0\.2\.128/25 collides with route 192\.0\.2\.0/24 dev eth0"):
        ipam.parse_subnet("192.0.2.128/25", claims)
    with pytest.raises(InvalidSpec, match="Docker's address pool 172.20.0.0/16"):
        ipam.parse_subnet("172.20.1.0/24", claims)
    with pytest.raises(InvalidSpec, match="'10.1.2.3/33'"):
        ipam.parse_subnet("10.1.2.3/33", claims)
    with pytest.raises(InvalidSpec, match="too small"):
        ipam.parse_subnet("10.1.2.0/30", claims)
    assert ipam.parse_subnet("10.50.0.7/24", claims) == IPv4Network("10.50.0.0/24")


def test_allocation_is_lowest_free_and_never_the_gateway() -> None:
    subnet = IPv4Network("10.9.0.0/29")  # hosts .1-.6, .1 is the gateway
    assert ipam.gateway_of(subnet) == IPv4Address("10.9.0.1")
    assert ipam.allocate_address(subnet, [], "n") == IPv4Address("10.9.0.2")
    assert ipam.allocate_address(subnet, ["10.9.0.2", "10.9.0.4"], "n") == IPv4Address("10.9.0.3")
    with pytest.raises(ConflictError, match="network 'n' has no free address left in 10.9.0.0/29"):
        ipam.allocate_address(subnet, [f"10.9.0.{i}" for i in range(2, 7)], "n")


def test_a_given_gateway_is_a_host_of_the_subnet_and_never_handed_out() -> None:
    net = IPv4Network("10.1.2.0/24")
    assert ipam.parse_gateway("10.1.2.254", net) == IPv4Address("10.1.2.254")
    assert ipam.allocate_address(net, [], "n", "10.1.2.254") == IPv4Address("10.1.2.1")
    assert ipam.allocate_address(net, ["10.1.2.1"], "n", "10.1.2.2") == IPv4Address("10.1.2.3")
    with pytest.raises(ConflictError, match="10.1.2.254"):
        ipam.claim_address(net, [], "n", "10.1.2.254", "10.1.2.254")
    for bad, message in (("10.1.3.1", "not a host address"), ("10.1.2.255", "not a host"),
                         ("nope", "expected an IPv4 address")):
        with pytest.raises(InvalidSpec, match=message):
            ipam.parse_gateway(bad, net)


def test_internal_network_rules_keep_traffic_inside_the_bridge() -> None:
    rules = firewall.network_rules("isobox-x", IPv4Network("10.1.2.0/24"), "abc", "FORWARD",
                                   internal=True)
    assert "nat" not in rules  # nothing masqueraded
    lines = rules["filter"]
    assert lines[0].endswith("-j ACCEPT") and "-i isobox-x -o isobox-x" in lines[0]
    assert any("-i isobox-x ! -o isobox-x" in r and r.endswith("DROP") for r in lines)
    assert any("! -i isobox-x -o isobox-x" in r and r.endswith("DROP") for r in lines)
    assert all("isobox:net:abc" in r for r in lines)


def test_mac_follows_the_address() -> None:
    assert ipam.mac_for(IPv4Address("10.213.0.2")) == "02:42:0a:d5:00:02"


def test_render_hosts_lists_localhost_then_unique_names() -> None:
    text = hosts.render([("10.0.0.2", ["web", "web", "", "alias"]), ("10.0.0.3", [])])
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert text.endswith("10.0.0.2\tweb alias\n")
    assert "10.0.0.3" not in text


def test_write_in_place_keeps_the_inode(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    hosts.write_in_place(path, "a much longer first version\n")
    inode = path.stat().st_ino
    hosts.write_in_place(path, "short\n")
    assert path.read_text() == "short\n"
    assert path.stat().st_ino == inode
    assert oct(path.stat().st_mode & 0o777) == oct(0o644 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_requested_networks() -> None:
    assert requested_networks(ContainerSpec(image="x")) == [NetworkAttachment("bridge")]
    assert requested_networks(ContainerSpec(image="x", network_mode="none")) == []
    assert requested_networks(ContainerSpec(image="x", network_mode="host")) == []
    assert requested_networks(ContainerSpec(image="x", network_mode="app")) == \
        [NetworkAttachment("app")]
    both = [NetworkAttachment("a", ("x",)), NetworkAttachment("b")]
    assert requested_networks(ContainerSpec(image="x", networks=both)) == both


@pytest.mark.parametrize(("networks", "message"), [
    ([NetworkAttachment("a"), NetworkAttachment("a")], "'a' is listed twice"),
    ([NetworkAttachment("none"), NetworkAttachment("a")], "'none' cannot be combined"),
    ([NetworkAttachment("bridge", ("alias",))], "aliases need a user-defined network"),
])
def test_requested_networks_rejects(networks: list[NetworkAttachment], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        requested_networks(ContainerSpec(image="x", networks=networks))


def test_names_fit_ifnamsiz() -> None:
    assert bridge_name("ab" * 32) == "isobox-abababab"
    assert len(veth_name("f" * 64, 15)) <= 15
    assert veth_name("0123456789abcdef", 1) != veth_name("0123456789abcdef", 2)


def test_network_rules_tag_every_rule_and_isolate() -> None:
    rules = firewall.network_rules("isobox-n1", IPv4Network("10.213.0.0/24"), "n1", "DOCKER-USER")
    every = rules["filter"] + rules["nat"]
    assert all("--comment isobox:net:n1" in rule for rule in every)
    positions = [rule.split()[2] for rule in rules["filter"]]
    assert positions == [str(i) for i in range(1, len(positions) + 1)]
    drop = next(i for i, r in enumerate(rules["filter"]) if "-o isobox-+" in r and "DROP" in r)
    out = next(i for i, r in enumerate(rules["filter"]) if r.endswith("-i isobox-n1 "
               "-m comment --comment isobox:net:n1 -j ACCEPT"))
    assert drop < out  # other networks are refused before outbound traffic is allowed
    assert "-A POSTROUTING -s 10.213.0.0/24 ! -o isobox-n1" in rules["nat"][0]


def test_network_rules_accept_connections_dnatted_to_the_bridge() -> None:
    rules = firewall.network_rules("isobox-n1", IPv4Network("10.213.0.0/24"), "n1", "FORWARD")
    assert any("-o isobox-n1 -m conntrack --ctstate DNAT" in r and r.endswith("-j ACCEPT")
               for r in rules["filter"])


def test_port_rules_loopback_and_all_addresses() -> None:
    """Loopback: only the output chain (connections made on this host); every address: the
    prerouting chain too. Each rule is tagged with its container and network."""
    local = nft.Transaction()
    local.add_dnat(PortSpec.parse("5353:53/udp"), 5353, IPv4Address("10.0.0.2"), "c1", "n" * 64)
    assert [what.split()[4] for _, _, _, what in local._messages] == ["output:"]
    everywhere = nft.Transaction()
    everywhere.add_dnat(PortSpec.parse("0.0.0.0:8080:80"), 8080, IPv4Address("10.0.0.2"), "c1",
                        "n1")
    assert [what.split()[4] for _, _, _, what in everywhere._messages] == \
        ["output:", "prerouting:"]
    body = local._messages[0][2]
    assert b"fib" not in body and b"\x7f\x00\x00\x01" in body  # ip daddr 127.0.0.1
    assert b"fib" in everywhere._messages[0][2]  # fib daddr type local


def test_rule_comments_carry_container_and_network_within_nfts_limit() -> None:
    text = f"{nft.container_tag('c' * 64)} {nft.network_tag('n' * 64)}"
    data = nft._comment(text)
    assert len(data) - 2 <= 128
    assert nft._tag_of(data) == text
    assert nft.network_tag("n" * 64) == "isobox:net:" + "n" * nft.NETWORK_TAG_LENGTH


def test_netlink_attributes_are_padded_to_four_bytes() -> None:
    assert _nla(3, b"eth0\0") == b"\x09\x00\x03\x00eth0\0\0\0\0"
    assert len(_nla(1, b"\x01\x02\x03\x04")) == 8


def test_conntrack_attributes_are_found_inside_nested_ones() -> None:
    from pytest_isobox.native.network.conntrack import _attrs, _find

    inner = _nla(1, b"\x0a\x00\x00\x02") + _nla(2, b"\x7f\x00\x00\x01")
    data = _nla(1 | 0x8000, _nla(1 | 0x8000, inner)) + _nla(18, b"\x00\x00")
    assert [kind for kind, _, _ in _attrs(data)] == [1, 18]
    assert _find(_find(_find(data, 1), 1), 1) == b"\x0a\x00\x00\x02"
    assert _find(data, 7) is None


@pytest.mark.parametrize(("host_ip", "message"), [("localhost", "not an IP address"),
                                                   ("::1", "only IPv4")])
def test_published_host_address_must_be_ipv4(host_ip: str, message: str) -> None:
    from pytest_isobox.native.network.manager import _check_ports

    with pytest.raises(InvalidSpec, match=message):
        _check_ports([PortSpec(80, host_ip=host_ip)])
