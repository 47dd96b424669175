"""Published ports as nftables DNAT rules, sent over netlink from this process.

A container's port rules change on every start and removal, so they are kept out of
iptables: `iptables-restore` (nf_tables backend) costs a process spawn plus a read of every
rule on the host, 6 to 10 ms here for each change, while one netlink transaction of our own
costs a fraction of a millisecond. The rules live in our own table, `ip isobox`, with one
NAT chain per hook (`prerouting`: connections from outside; `output`: connections made on
this host). Every rule carries the comment `isobox:ctr:<container id> isobox:net:<network id
prefix>` (nft's own userdata encoding, so `nft list table ip isobox` shows it): the owner
deletes its rules by the first tag, and a sweep finds a dead owner's rules by either.

Each change is one transaction, all of it or none, and brings the table and its chains along
(creating them is a no-op when they exist), so a concurrent removal of the table never makes
an attach fail. Forwarding to the container (the filter table, where dockerd's DROP policy
is) is not here: each network's iptables rules accept connections DNAT'd to its bridge.

Root-only (CAP_NET_ADMIN in the host's network namespace).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address

from pytest_isobox import names
from pytest_isobox.engine import PortSpec
from pytest_isobox.engine.records import FrozenRecord, record
from pytest_isobox.native.network.nfnetlink import SOCKET as _SOCKET

TABLE = names.NFT_TABLE
CHAINS = {"prerouting": 0, "output": 3}  # chain -> NF_INET_PRE_ROUTING / NF_INET_LOCAL_OUT
PRIORITY_DSTNAT = -100

NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 16, 17
NFT_MSG_NEWTABLE, NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN = 0, 2, 3
NFT_MSG_NEWRULE, NFT_MSG_GETRULE, NFT_MSG_DELRULE = 6, 7, 8
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x200, 0x400, 0x800
NLA_F_NESTED = 0x8000
NFPROTO_IPV4 = 2

NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME, NFTA_CHAIN_HOOK, NFTA_CHAIN_TYPE = 1, 3, 4, 7
NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY = 1, 2
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE = 1, 2, 3
NFTA_RULE_EXPRESSIONS, NFTA_RULE_USERDATA = 4, 7
NFTA_LIST_ELEM, NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 1, 2
NFTA_DATA_VALUE = 1
NFT_REG_1, NFT_REG_2 = 1, 2
NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER = 1, 2
NFT_META_L4PROTO = 16
NFT_CMP_EQ = 0
NFT_NAT_DNAT = 1
NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_F_DADDR, RTN_LOCAL = 3, 2, 2
NFTNL_UDATA_RULE_COMMENT = 0

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_NLA = struct.Struct("=HH")


NETWORK_TAG_LENGTH = 32  # hex digits of the network id: the comment holds 128 bytes at most


def container_tag(container_id: str) -> str:
    return f"isobox:ctr:{container_id}"


def network_tag(network_id: str) -> str:
    return f"isobox:net:{network_id[:NETWORK_TAG_LENGTH]}"


# ---------------------------------------------------------------- encoding


def _attr(kind: int, payload: bytes) -> bytes:
    size = _NLA.size + len(payload)
    return _NLA.pack(size, kind) + payload + b"\0" * (-size % 4)


def _nest(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(attrs))


def _str(kind: int, text: str) -> bytes:
    return _attr(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack(">I", value & 0xFFFFFFFF))


def _expr(name: str, *attrs: bytes) -> bytes:
    return _nest(NFTA_LIST_ELEM, _str(NFTA_EXPR_NAME, name), _nest(NFTA_EXPR_DATA, *attrs))


def _load_payload(base: int, offset: int, length: int) -> bytes:
    return _expr("payload", _u32(1, NFT_REG_1), _u32(2, base), _u32(3, offset), _u32(4, length))


def _equals(value: bytes) -> bytes:
    return _expr("cmp", _u32(1, NFT_REG_1), _u32(2, NFT_CMP_EQ),
                 _nest(3, _attr(NFTA_DATA_VALUE, value)))


def _immediate(register: int, value: bytes) -> bytes:
    return _expr("immediate", _u32(1, register), _nest(2, _attr(NFTA_DATA_VALUE, value)))


def _comment(text: str) -> bytes:
    data = text.encode() + b"\0"
    return bytes((NFTNL_UDATA_RULE_COMMENT, len(data))) + data


def _dnat_expressions(port: PortSpec, host_port: int, ip: IPv4Address) -> bytes:
    """`ip daddr H` (or `fib daddr type local` for every address) `P dport N dnat to IP:C`."""
    if port.host_ip in ("", "0.0.0.0"):
        match = _expr("fib", _u32(1, NFT_REG_1), _u32(2, NFT_FIB_RESULT_ADDRTYPE),
                      _u32(3, NFTA_FIB_F_DADDR)) + _equals(struct.pack("=I", RTN_LOCAL))
    else:  # the destination address: offset 16 of the IPv4 header
        match = _load_payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4) \
            + _equals(IPv4Address(port.host_ip).packed)
    proto = socket.IPPROTO_TCP if port.protocol == "tcp" else socket.IPPROTO_UDP
    protocol = _expr("meta", _u32(1, NFT_REG_1), _u32(2, NFT_META_L4PROTO)) \
        + _equals(bytes((proto,)))
    dport = _load_payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2) \
        + _equals(struct.pack(">H", host_port))
    target = _immediate(NFT_REG_1, ip.packed) \
        + _immediate(NFT_REG_2, struct.pack(">H", port.container_port)) \
        + _expr("nat", _u32(1, NFT_NAT_DNAT), _u32(2, NFPROTO_IPV4), _u32(3, NFT_REG_1),
                _u32(5, NFT_REG_2))
    return match + protocol + dport + target


# ---------------------------------------------------------------- transactions


@record
class Rule(FrozenRecord):
    """One rule of our table as the kernel reports it; `tags` are the words of its comment."""

    chain: str
    handle: int
    tags: tuple[str, ...]


class Transaction:
    """nf_tables requests applied as one batch: every one of them or none."""

    def __init__(self) -> None:
        self._messages: list[tuple[int, int, bytes, str]] = []

    def __bool__(self) -> bool:
        return bool(self._messages)

    def add(self, kind: int, flags: int, attrs: bytes, what: str) -> None:
        self._messages.append((kind, flags, attrs, what))

    def ensure_table(self) -> None:
        """Our table and its NAT chains, made if missing (a no-op when they exist)."""
        self.add(NFT_MSG_NEWTABLE, NLM_F_CREATE, _str(NFTA_TABLE_NAME, TABLE),
                 f"create table ip {TABLE}")
        for chain, hook in CHAINS.items():
            self.add(NFT_MSG_NEWCHAIN, NLM_F_CREATE,
                     _str(NFTA_CHAIN_TABLE, TABLE) + _str(NFTA_CHAIN_NAME, chain)
                     + _nest(NFTA_CHAIN_HOOK, _u32(NFTA_HOOK_HOOKNUM, hook),
                             _u32(NFTA_HOOK_PRIORITY, PRIORITY_DSTNAT))
                     + _str(NFTA_CHAIN_TYPE, "nat"),
                     f"create chain ip {TABLE} {chain}")

    def add_dnat(self, port: PortSpec, host_port: int, ip: IPv4Address, container_id: str,
                 network_id: str) -> None:
        """DNAT of host_ip:host_port to ip:container_port for connections made on this host,
        and, unless the host address is loopback, for those arriving from outside too."""
        chains = ["output"]
        if not IPv4Address(port.host_ip or "0.0.0.0").is_loopback:
            chains.append("prerouting")
        expressions = _dnat_expressions(port, host_port, ip)
        for chain in chains:
            self.add(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND,
                     _str(NFTA_RULE_TABLE, TABLE) + _str(NFTA_RULE_CHAIN, chain)
                     + _nest(NFTA_RULE_EXPRESSIONS, expressions)
                     + _attr(NFTA_RULE_USERDATA, _comment(
                         f"{container_tag(container_id)} {network_tag(network_id)}")),
                     f"add rule ip {TABLE} {chain}: {port.key} on "
                     f"{port.host_ip or '0.0.0.0'}:{host_port} to {ip}")

    def delete_rule(self, rule: Rule) -> None:
        self.add(NFT_MSG_DELRULE, 0,
                 _str(NFTA_RULE_TABLE, TABLE) + _str(NFTA_RULE_CHAIN, rule.chain)
                 + _attr(NFTA_RULE_HANDLE, struct.pack(">Q", rule.handle)),
                 f"delete rule ip {TABLE} {rule.chain} handle {rule.handle} "
                 f"({' '.join(rule.tags)})")

    def delete_table(self) -> None:
        self.add(NFT_MSG_DELTABLE, 0, _str(NFTA_TABLE_NAME, TABLE), f"delete table ip {TABLE}")

    def commit(self) -> None:
        """Send the batch and wait for the kernel's verdict; raise OSError naming the first
        request that failed (then none of them took effect)."""
        if not self._messages:
            return
        batch_header = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(NFNL_SUBSYS_NFTABLES))
        body = struct.pack("=BBH", NFPROTO_IPV4, 0, 0)
        parts = [_HEADER.pack(_HEADER.size + len(batch_header), NFNL_MSG_BATCH_BEGIN,
                              NLM_F_REQUEST, 0, 0) + batch_header]
        for seq, (kind, flags, attrs, _) in enumerate(self._messages, 1):
            parts.append(_HEADER.pack(_HEADER.size + len(body) + len(attrs),
                                      (NFNL_SUBSYS_NFTABLES << 8) | kind,
                                      flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body + attrs)
        parts.append(_HEADER.pack(_HEADER.size + len(batch_header), NFNL_MSG_BATCH_END,
                                  NLM_F_REQUEST, len(self._messages) + 1, 0) + batch_header)
        failures = []
        with _SOCKET as sock:
            sock.sendall(b"".join(parts))
            pending = len(self._messages)
            while pending:
                for kind, seq, payload in _messages(sock.recv(1 << 16)):
                    if kind != NLMSG_ERROR:
                        continue
                    (error,) = struct.unpack_from("=i", payload)
                    if not 0 < seq <= len(self._messages):  # the batch as a whole: refused
                        raise OSError(-error, f"nftables: batch refused: {os.strerror(-error)}")
                    if error:
                        failures.append((seq, -error))
                    pending -= 1
        if failures:
            seq, err = min(failures)
            raise OSError(err, f"nftables: {self._messages[seq - 1][3]}: {os.strerror(err)}")


def _messages(buf: bytes) -> Iterator[tuple[int, int, bytes]]:
    offset = 0
    while offset + _HEADER.size <= len(buf):
        length, kind, _, seq, _ = _HEADER.unpack_from(buf, offset)
        yield kind, seq, buf[offset + _HEADER.size:offset + length]
        offset += (length + 3) & ~3


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + _NLA.size <= len(data):
        length, kind = _NLA.unpack_from(data, offset)
        if length < _NLA.size:
            return
        yield kind & ~NLA_F_NESTED, data[offset + _NLA.size:offset + length]
        offset += (length + 3) & ~3


def _tag_of(userdata: bytes) -> str:
    offset = 0
    while offset + 2 <= len(userdata):
        kind, length = userdata[offset], userdata[offset + 1]
        if kind == NFTNL_UDATA_RULE_COMMENT:
            return userdata[offset + 2:offset + 2 + length].rstrip(b"\0").decode(errors="replace")
        offset += 2 + length
    return ""


def rules() -> list[Rule]:
    """Every rule of our table (none when the table does not exist)."""
    body = struct.pack("=BBH", NFPROTO_IPV4, 0, 0) + _str(NFTA_RULE_TABLE, TABLE)
    request = _HEADER.pack(_HEADER.size + len(body), (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
                           NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body
    found = []
    with _SOCKET as sock:
        sock.sendall(request)
        while True:
            for kind, _, payload in _messages(sock.recv(1 << 20)):
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", payload)
                    if -error == errno.ENOENT:
                        return found
                    if error:
                        raise OSError(-error, f"nftables: list table ip {TABLE}: "
                                              f"{os.strerror(-error)}")
                    continue
                chain, handle, tag = "", 0, ""
                for attr, value in _attrs(payload[4:]):
                    if attr == NFTA_RULE_CHAIN:
                        chain = value.rstrip(b"\0").decode()
                    elif attr == NFTA_RULE_HANDLE:
                        (handle,) = struct.unpack(">Q", value)
                    elif attr == NFTA_RULE_USERDATA:
                        tag = _tag_of(value)
                found.append(Rule(chain, handle, tuple(tag.split())))


# ---------------------------------------------------------------- the API


_table_made_by = 0  # the process that last made sure our table and chains exist


def publish(ports: list[tuple[PortSpec, int]], ip: IPv4Address, container_id: str,
            network_id: str) -> None:
    """DNAT each (port, host port) to ip on the network, as one transaction tagged with the
    container and the network. The table and chains come along the first time in a process,
    and again whenever they were removed meanwhile."""
    global _table_made_by
    if not ports:
        return
    ensure = _table_made_by != os.getpid()
    while True:
        transaction = Transaction()
        if ensure:
            transaction.ensure_table()
        for port, host_port in ports:
            transaction.add_dnat(port, host_port, ip, container_id, network_id)
        try:
            transaction.commit()
        except OSError as exc:
            if exc.errno != errno.ENOENT or ensure:
                raise
            ensure = True  # the table went (with the last network): make it again
            continue
        _table_made_by = os.getpid()
        return


def remove_tagged(container_ids: set[str] = frozenset(),  # type: ignore[assignment]
                  network_ids: set[str] = frozenset()) -> int:  # type: ignore[assignment]
    """Delete every rule of these containers and networks, in one transaction; how many were
    deleted. A rule deleted meanwhile by another process (a sweep) is no failure: the list is
    read again and the rest deleted."""
    tags = {container_tag(c) for c in container_ids} | {network_tag(n) for n in network_ids}
    if not tags:
        return 0
    for attempt in range(5):
        doomed = [rule for rule in rules() if tags.intersection(rule.tags)]
        transaction = Transaction()
        for rule in doomed:
            transaction.delete_rule(rule)
        try:
            transaction.commit()
        except OSError as exc:
            if exc.errno != errno.ENOENT or attempt == 4:
                raise
            continue
        return len(doomed)
    raise AssertionError("unreachable")


def remove_table() -> None:
    """Delete our table and whatever it holds; a no-op when it does not exist."""
    transaction = Transaction()
    transaction.delete_table()
    try:
        transaction.commit()
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
