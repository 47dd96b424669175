"""Volume verbs: volume create, ls, rm."""

from __future__ import annotations

import argparse

from pytest_isobox.cli.output import _table
from pytest_isobox.engine import Engine, IsoboxError


def cmd_volume_create(engine: Engine, args: argparse.Namespace) -> int:
    print(engine.volume_create(args.name))
    return 0


def cmd_volume_ls(engine: Engine, args: argparse.Namespace) -> int:
    _table([("VOLUME NAME",), *((v,) for v in engine.volumes())])
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
