"""Volume verbs: volume create, ls, inspect, prune, rm."""

from __future__ import annotations

from pytest_isobox.cli.output import check_format, render_table
from pytest_isobox.engine import IsoboxError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: `volume ls` loads neither argparse nor the protocol)
    import argparse

    from pytest_isobox.engine import Engine


def cmd_volume_create(engine: Engine, args: argparse.Namespace) -> int:
    """Docker's `volume create [NAME]`: without a name, a random 64-hex one."""
    import secrets

    if args.driver != "local":
        raise IsoboxError(f"volume create -d {args.driver}: only the local driver is offered")
    print(engine.volume_create(args.name or secrets.token_hex(32)))
    return 0


_VOLUME_HEADERS = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Scope": "SCOPE"}
_VOLUME_TABLE = "table {{.Driver}}\t{{.Name}}"


def cmd_volume_ls(engine: Engine, args: argparse.Namespace) -> int:
    """Docker's `volume ls`: DRIVER and VOLUME NAME, `-q`, `--format`, `--filter name=`."""
    from pytest_isobox.cli.filters import name_matches, parse_filters

    filters = parse_filters(args.filter, ("name", "driver"))
    template = "{{.Name}}" if args.quiet else (args.format or _VOLUME_TABLE)
    check_format(template)
    rows = [{"Driver": "local", "Name": name, "Scope": "local", "Mountpoint": "", "Labels": ""}
            for name in sorted(engine.volumes())]
    rows = [r for r in rows
            if all(name_matches(r["Name"], v) for v in filters.get("name", ()))
            and all(r["Driver"] == v for v in filters.get("driver", ()))]
    for line in render_table(template, rows, _VOLUME_HEADERS, default_table=_VOLUME_TABLE):
        print(line)
    return 0


def cmd_volume_rm(engine: Engine, args: argparse.Namespace) -> int:
    for name in args.names:
        engine.volume_remove(name, force=args.force)
        print(name)
    return 0


def cmd_volume_inspect(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli import inspecting

    return inspecting.print_inspected(
        args.names, lambda name: inspecting.volume_document(engine, name), args.format)


def cmd_volume_prune(engine: Engine, args: argparse.Namespace) -> int:
    """Remove the volumes no container mounts (their data goes with them)."""
    from pytest_isobox.cli.networks import _confirm

    if not args.force and not _confirm("remove all local volumes not used by a container"):
        return 0
    removed = []
    for name in engine.volumes():
        try:
            engine.volume_remove(name, force=False)  # refused for a volume in use
            removed.append(name)
        except IsoboxError:
            continue
    if removed:
        print("Deleted Volumes:")
        print("\n".join(removed))
    return 0
