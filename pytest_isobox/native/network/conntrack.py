"""Forgetting the tracked connections of a removed container (ctnetlink, encoded directly).

A DNAT'd UDP flow keeps its translation in conntrack after the rule that made it is gone, so a
client that goes on sending from the same port would still reach the old address. The
container's teardown deletes every entry whose reply comes from its address. Root-only.
Encoded here rather than through pyroute2, whose import costs most of a second in the
short-lived process (the runtime's monitor) that tears a container down; sent through the
process's netfilter socket (`nfnetlink`), whose close right after the teardown's nftables
deletion would wait for the kernel.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address

from pytest_isobox.native.network.nfnetlink import SOCKET

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_ZONE = 1, 2, 18
CTA_TUPLE_IP, CTA_IP_V4_SRC = 1, 1
NLA_TYPE_MASK = 0x3FFF

_HEADER = struct.Struct("=IHHII")
_NFGEN = struct.pack("=BBH", socket.AF_INET, 0, 0)


def _attrs(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """(type, payload, the whole attribute) for each netlink attribute in data."""
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & NLA_TYPE_MASK, data[offset + 4:offset + length], \
            data[offset:offset + ((length + 3) & ~3)]
        offset += (length + 3) & ~3


def _find(data: bytes, kind: int) -> bytes | None:
    return next((payload for k, payload, _ in _attrs(data) if k == kind), None)


def _messages(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each message of one dump, until its end."""
    while True:
        buf = sock.recv(1 << 20)
        offset = 0
        while offset + _HEADER.size <= len(buf):
            length, kind, _, _, _ = _HEADER.unpack_from(buf, offset)
            payload = buf[offset + _HEADER.size:offset + length]
            offset += (length + 3) & ~3
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                (error,) = struct.unpack_from("=i", payload)
                if error:
                    raise OSError(-error, f"conntrack dump: {os.strerror(-error)}")
                continue
            yield kind, payload


def _request(kind: int, flags: int, body: bytes, seq: int) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | kind,
                        flags | NLM_F_REQUEST, seq, 0) + body


def forget_flows(ip: str) -> int:
    """Delete every IPv4 conntrack entry answered by `ip`; how many were deleted."""
    wanted = IPv4Address(ip).packed
    with SOCKET as sock:
        sock.sendall(_request(IPCTNL_MSG_CT_GET, NLM_F_DUMP, _NFGEN, 1))
        doomed = []
        for _, payload in _messages(sock):
            attrs = payload[len(_NFGEN):]
            reply = _find(attrs, CTA_TUPLE_REPLY)
            addresses = _find(reply, CTA_TUPLE_IP) if reply else None
            if addresses and _find(addresses, CTA_IP_V4_SRC) == wanted:
                doomed.append(b"".join(whole for kind, _, whole in _attrs(attrs)
                                       if kind in (CTA_TUPLE_ORIG, CTA_ZONE)))
        for seq, tuple_attrs in enumerate(doomed, 2):
            sock.sendall(_request(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, _NFGEN + tuple_attrs, seq))
        deleted = 0
        for _ in doomed:
            buf = sock.recv(65536)
            (error,) = struct.unpack_from("=i", buf, _HEADER.size)
            if error == 0:
                deleted += 1
            elif -error != errno.ENOENT:  # ENOENT: it expired meanwhile
                raise OSError(-error, f"conntrack delete: {os.strerror(-error)}")
    return deleted
