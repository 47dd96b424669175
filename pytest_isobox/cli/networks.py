"""Network verbs: network create, ls, inspect, rm."""

from __future__ import annotations

import sys

from pytest_isobox.cli.output import check_format, render_table
from pytest_isobox.engine import IsoboxError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: `network ls` loads neither argparse nor the protocol)
    import argparse

    from pytest_isobox.engine import Engine


def cmd_network_create(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox import dockerargs
    from pytest_isobox.engine import PERSISTENT_LABEL

    # A network made from the CLI lives until `network rm`, as in Docker.
    if args.driver != "bridge":
        raise IsoboxError(f"network create -d {args.driver}: only the bridge driver is offered")
    labels = {**dockerargs.parse_labels(args.label), PERSISTENT_LABEL: "1"}
    extra: dict = {}
    if args.gateway:
        extra["gateway"] = args.gateway
    if args.internal:
        extra["internal"] = True
    print(engine.network_create(args.name, subnet=args.subnet, labels=labels, **extra).id)
    return 0


def _network_verb(engine: Engine, name: str):  # -> the engine's method
    method = getattr(engine, name, None)
    if method is None:
        raise IsoboxError(f"network {name.split('_')[1]}: not supported by the {engine.name} "
                          "engine")
    return method


def cmd_network_connect(engine: Engine, args: argparse.Namespace) -> int:
    extra = {"ip": args.ip} if args.ip else {}  # (an engine may not know it)
    _network_verb(engine, "network_connect")(args.network, args.container,
                                             aliases=list(args.alias or []), **extra)
    return 0


def cmd_network_disconnect(engine: Engine, args: argparse.Namespace) -> int:
    _network_verb(engine, "network_disconnect")(args.network, args.container, force=args.force)
    return 0


# Docker lists these modes as networks; an engine without such objects still offers them.
_MODE_NETWORKS = (("host", "host"), ("none", "null"))


_NETWORK_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER",
                    "Scope": "SCOPE", "Subnet": "SUBNET", "Labels": "LABELS"}
_NETWORK_TABLE = "table {{.ID}}\\t{{.Name}}\\t{{.Driver}}\\t{{.Scope}}"  # Docker's columns


def cmd_network_ls(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli.filters import label_matches, name_matches, parse_filters

    filters = parse_filters(args.filter, ("name", "id", "driver", "label", "type"))
    template = "{{.ID}}" if args.quiet else (args.format or _NETWORK_TABLE)
    check_format(template)
    networks = engine.networks()
    rows = [{"ID": n.id if args.no_trunc else n.id[:12], "Name": n.name, "Driver": n.driver,
             "Scope": "local", "Subnet": n.subnet or "", "Labels": ",".join(
                 f"{k}={v}" for k, v in sorted(n.labels.items())), "_labels": n.labels,
             "_full_id": n.id, "_builtin": n.name == "bridge"}
            for n in networks]
    names = {n.name for n in networks}
    rows += [{"ID": "-", "Name": name, "Driver": driver, "Scope": "local", "Subnet": "",
              "Labels": "", "_labels": {}, "_full_id": "", "_builtin": True}
             for name, driver in _MODE_NETWORKS if name not in names]

    def keep(row: dict) -> bool:
        def any_of(key: str, test) -> bool:
            return key not in filters or any(test(v) for v in filters[key])

        kind = "builtin" if row["_builtin"] else "custom"
        return (any_of("name", lambda v: name_matches(row["Name"], v))
                and any_of("id", lambda v: bool(row["_full_id"]) and row["_full_id"].startswith(v))
                and any_of("driver", lambda v: row["Driver"] == v)
                and all(label_matches(row["_labels"], v) for v in filters.get("label", ()))
                and any_of("type", lambda v: v == kind))

    rows = [r for r in rows if keep(r)]
    if args.quiet:
        rows = [r for r in rows if r["ID"] != "-"]
    for line in render_table(template, rows, _NETWORK_HEADERS, default_table=_NETWORK_TABLE):
        print(line)
    return 0


def cmd_network_prune(engine: Engine, args: argparse.Namespace) -> int:
    """Remove the networks no container is on (not the default one), as Docker's prune."""
    if not args.force and not _confirm("remove all networks not used by any container"):
        return 0
    removed = []
    for info in engine.networks():
        if info.name in ("bridge", "host", "none") or info.containers:
            continue
        try:
            engine.network_remove(info.name)
            removed.append(info.name)
        except IsoboxError:  # joined meanwhile
            continue
    if removed:
        print("Deleted Networks:")
        print("\n".join(removed))
    return 0


def _confirm(what: str) -> bool:
    """Docker asks before a prune unless -f; without a terminal there is nobody to ask."""
    if not sys.stdin.isatty():
        raise IsoboxError(f"this would {what}: add -f/--force (no terminal to ask)")
    answer = input(f"WARNING! This will {what}.\nAre you sure you want to continue? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_network_inspect(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli import inspecting

    return inspecting.print_inspected(
        args.names, lambda name: inspecting.network_document(engine, name), args.format)


def cmd_network_rm(engine: Engine, args: argparse.Namespace) -> int:
    for name in args.names:
        engine.network_remove(name)
        print(name)
    return 0
