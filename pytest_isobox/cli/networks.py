"""Network verbs: network create, ls, inspect, rm."""

from __future__ import annotations

import argparse
import sys

from pytest_isobox import dockerargs
from pytest_isobox.cli.output import _table, compile_format, print_documents
from pytest_isobox.engine import PERSISTENT_LABEL, Engine, IsoboxError


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


def cmd_network_inspect(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli import inspecting

    template = compile_format(args.format)
    docs, status = [], 0
    for name in args.names:
        try:
            docs.append(inspecting.network_document(engine, name))
        except IsoboxError as exc:
            print(f"isobox: {exc}", file=sys.stderr)
            status = 1
    print_documents(docs, template)
    return status


def cmd_network_rm(engine: Engine, args: argparse.Namespace) -> int:
    for name in args.names:
        engine.network_remove(name)
        print(name)
    return 0
