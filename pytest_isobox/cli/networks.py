"""Network verbs: network create, ls, inspect, rm."""

from __future__ import annotations

import argparse
import json

from pytest_isobox import dockerargs
from pytest_isobox.cli.output import _table
from pytest_isobox.engine import PERSISTENT_LABEL, Engine, NetworkInfo


def cmd_network_create(engine: Engine, args: argparse.Namespace) -> int:
    # A network made from the CLI lives until `network rm`, as in Docker.
    labels = {**dockerargs.parse_labels(args.label), PERSISTENT_LABEL: "1"}
    print(engine.network_create(args.name, subnet=args.subnet, labels=labels).id)
    return 0


# Docker lists these modes as networks; an engine without such objects still offers them.
_MODE_NETWORKS = (("host", "host"), ("none", "null"))


def cmd_network_ls(engine: Engine, args: argparse.Namespace) -> int:
    rows = [("NETWORK ID", "NAME", "DRIVER", "SUBNET")]
    networks = engine.networks()
    for n in networks:
        rows.append((n.id[:12], n.name, n.driver, n.subnet or ""))
    names = {n.name for n in networks}
    rows += [("-", name, driver, "") for name, driver in _MODE_NETWORKS if name not in names]
    _table(rows)
    return 0


def _network_doc(info: NetworkInfo) -> dict:
    """Docker's network inspect document."""
    config = [{"Subnet": info.subnet, "Gateway": info.gateway}] if info.subnet else []
    return {
        "Name": info.name, "Id": info.id, "Driver": info.driver,
        "IPAM": {"Driver": "default", "Config": config},
        "Containers": {cid: {"IPv4Address": ip} for cid, ip in info.containers.items()},
        "Labels": info.labels,
    }


def cmd_network_inspect(engine: Engine, args: argparse.Namespace) -> int:
    print(json.dumps([_network_doc(engine.network_inspect(n)) for n in args.names], indent=4))
    return 0


def cmd_network_rm(engine: Engine, args: argparse.Namespace) -> int:
    for name in args.names:
        engine.network_remove(name)
        print(name)
    return 0
