"""Volume verbs: volume create, ls, rm."""

from __future__ import annotations

import argparse

from pytest_isobox.cli.output import _table
from pytest_isobox.engine import Engine


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
