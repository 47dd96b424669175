"""A network's record (store.py's by-name/<name>.json with its members filled in) as the
seam's NetworkInfo: one conversion for the network manager and the read-only reader, which
reads the records without the manager's netlink and firewall modules."""

from __future__ import annotations

from pytest_isobox.engine.records import NetworkInfo

DEFAULT_NETWORK = "bridge"  # the network a container joins unless told otherwise


def network_info(record: dict) -> NetworkInfo:
    return NetworkInfo(
        name=record["name"], id=record["id"], driver="bridge", subnet=record["subnet"],
        gateway=record["gateway"],
        containers={cid: m["ip"] for cid, m in record["members"].items()},
        labels=dict(record.get("labels", {})), internal=bool(record.get("internal")),
        created=record.get("created"),
    )
