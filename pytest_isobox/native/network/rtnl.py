"""The rtnetlink requests of a container start, encoded directly and sent in batches.

A container start needs a veth pair (host end on the bridge, peer in the container), then in
the container: loopback and eth0 up, an address, a default route. Through pyroute2 0.9 (an
asyncio request path and generic encoders) that costs 10 ms or more on this machine; here it
is two sends, one per namespace, each answered by one acknowledgement per request, in about
a millisecond. Link deletion, bridges and the dump of the host's IPv4 routes (which a new
network's subnet must not shadow) are here too: nothing of isobox needs pyroute2, whose import
alone took about 100 ms of the first command that made a network.

Each failing request raises OSError with its errno and the step that failed.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address

from pytest_isobox.engine.records import Record, factory, record
from pytest_isobox.native import linux

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x300, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE, RTM_GETROUTE = 16, 17, 20, 24, 26
RTA_DST, RTA_OIF, RTA_TABLE = 1, 4, 15
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_PID = 1, 3, 10, 18, 19
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_GATEWAY = 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid


def _nla(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def _name(text: str) -> bytes:
    return text.encode() + b"\0"


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


@record
class Batch(Record):
    """Requests sent in one write; `send` waits for every acknowledgement."""

    messages: list[tuple[int, int, bytes, str]] = factory(list)

    def add(self, kind: int, flags: int, body: bytes, what: str) -> None:
        self.messages.append((kind, flags | NLM_F_REQUEST | NLM_F_ACK, body, what))

    def send(self, sock: socket.socket) -> None:
        data = b"".join(
            _HEADER.pack(_HEADER.size + len(body), kind, flags, seq, 0) + body
            for seq, (kind, flags, body, _) in enumerate(self.messages, 1)
        )
        sock.sendall(data)
        pending, failures = len(self.messages), []
        while pending:
            buf = sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(buf):
                length, kind, _, seq, _ = _HEADER.unpack_from(buf, offset)
                if kind == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", buf, offset + _HEADER.size)
                    if error:
                        failures.append((seq, -error))
                    pending -= 1
                offset += (length + 3) & ~3
        if failures:
            seq, err = min(failures)
            raise OSError(err, f"{self.messages[seq - 1][3]}: {os.strerror(err)}")


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         socket.NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock


def add_veth(host_name: str, bridge: str, pid: int, peer_name: str, mac: str) -> None:
    """A veth pair: host end up on `bridge`; the peer, with `mac`, inside pid's netns."""
    master = socket.if_nametoindex(bridge)
    peer = _ifinfomsg() + _nla(IFLA_IFNAME, _name(peer_name)) + _nla(IFLA_ADDRESS, _mac(mac)) \
        + _nla(IFLA_NET_NS_PID, struct.pack("=I", pid))
    linkinfo = _nla(IFLA_INFO_KIND, _name("veth")) \
        + _nla(IFLA_INFO_DATA, _nla(VETH_INFO_PEER, peer))
    body = _ifinfomsg(flags=IFF_UP, change=IFF_UP) + _nla(IFLA_IFNAME, _name(host_name)) \
        + _nla(IFLA_MASTER, struct.pack("=I", master)) + _nla(IFLA_LINKINFO, linkinfo)
    batch = Batch()
    batch.add(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body,
              f"create veth {host_name} on {bridge} with peer {peer_name} in pid {pid}")
    with _socket() as sock:
        batch.send(sock)


def add_bridge(name: str) -> int:
    """A new bridge `name`, down and without address; its interface index."""
    linkinfo = _nla(IFLA_INFO_KIND, _name("bridge"))
    batch = Batch()
    batch.add(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
              _ifinfomsg() + _nla(IFLA_IFNAME, _name(name)) + _nla(IFLA_LINKINFO, linkinfo),
              f"create bridge {name}")
    with _socket() as sock:
        batch.send(sock)
    return socket.if_nametoindex(name)


def address_and_up(name: str, ip: IPv4Address, prefixlen: int) -> None:
    """`ip/prefixlen` on link `name`, then the link up (in this thread's netns)."""
    index = socket.if_nametoindex(name)
    batch = Batch()
    batch.add(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
              struct.pack("=BBBBI", socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
              + _nla(IFA_LOCAL, ip.packed) + _nla(IFA_ADDRESS, ip.packed),
              f"add {ip}/{prefixlen} to {name}")
    batch.add(RTM_NEWLINK, 0, _ifinfomsg(index, IFF_UP, IFF_UP), f"set {name} up")
    with _socket() as sock:
        batch.send(sock)


def ipv4_routes() -> list[tuple[IPv4Address | None, int, int, int]]:
    """Every IPv4 route of this thread's netns, all tables: (destination or None for a
    default route, prefix length, out interface index or 0, table)."""
    request = _HEADER.pack(_HEADER.size + 12, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) \
        + struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    routes = []
    with _socket() as sock:
        sock.sendall(request)
        while True:
            buf = sock.recv(1 << 16)  # netlink: whole messages per datagram
            offset = 0
            while offset + _HEADER.size <= len(buf):
                length, kind, _, _, _ = _HEADER.unpack_from(buf, offset)
                if kind == NLMSG_DONE:
                    return routes
                if kind == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", buf, offset + _HEADER.size)
                    raise OSError(-error, f"dump IPv4 routes: {os.strerror(-error)}")
                if kind == RTM_NEWROUTE:
                    routes.append(_route(buf[offset + _HEADER.size:offset + length]))
                offset += (length + 3) & ~3


def _route(body: bytes) -> tuple[IPv4Address | None, int, int, int]:
    """(dst, dst_len, oif, table) of one rtmsg (12 bytes) and its attributes."""
    dst_len, table = body[1], body[4]
    dst, oif, offset = None, 0, 12
    while offset + 4 <= len(body):
        size, kind = struct.unpack_from("=HH", body, offset)
        if size < 4:
            break
        value = body[offset + 4:offset + size]
        if kind == RTA_DST and len(value) == 4:
            dst = IPv4Address(value)
        elif kind == RTA_OIF and len(value) == 4:
            (oif,) = struct.unpack("=I", value)
        elif kind == RTA_TABLE and len(value) == 4:
            (table,) = struct.unpack("=I", value)
        offset += (size + 3) & ~3
    return dst, dst_len, oif, table


def delete_link(name: str) -> bool:
    """Delete a link (a veth takes its peer along); False when it was already gone."""
    batch = Batch()
    batch.add(RTM_DELLINK, 0, _ifinfomsg() + _nla(IFLA_IFNAME, _name(name)), f"delete link {name}")
    try:
        with _socket() as sock:
            batch.send(sock)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise
    return True


@contextmanager
def in_netns_of(pid: int) -> Iterator[None]:
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


def configure_netns(pid: int, interfaces: list[tuple[str, IPv4Address, int]],
                    gateway: IPv4Address | None, *, loopback: bool = True) -> None:
    """Inside pid's netns: loopback up (unless `loopback` is False: a running container's,
    up already); each (name, address, prefix) up; a default route."""
    with in_netns_of(pid):
        sock = _socket()  # a netlink socket belongs to the namespace it was made in
        lo_index = socket.if_nametoindex("lo")
        indexes = [socket.if_nametoindex(name) for name, _, _ in interfaces]
    batch = Batch()
    if loopback:
        batch.add(RTM_NEWLINK, 0, _ifinfomsg(lo_index, IFF_UP, IFF_UP), f"set lo up in pid {pid}")
    for index, (name, ip, prefixlen) in zip(indexes, interfaces):
        batch.add(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                  struct.pack("=BBBBI", socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
                  + _nla(IFA_LOCAL, ip.packed) + _nla(IFA_ADDRESS, ip.packed),
                  f"add {ip}/{prefixlen} to {name} in pid {pid}")
        batch.add(RTM_NEWLINK, 0, _ifinfomsg(index, IFF_UP, IFF_UP), f"set {name} up in pid {pid}")
    if gateway is not None:
        batch.add(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                  struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                              RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
                  + _nla(RTA_GATEWAY, gateway.packed),
                  f"add default route via {gateway} in pid {pid}")
    with sock:
        if batch.messages:
            batch.send(sock)
