"""`isobox compose`: the compose command, which parses its own arguments."""

from __future__ import annotations

import argparse


def cmd_compose(engine: None, args: argparse.Namespace) -> int:
    """Forwarded whole to pytest_isobox.compose.command (imported only for this verb)."""
    from pytest_isobox.compose.command import main as compose_main

    given = [(flag, value) for flag, value in (("--engine", args.engine), ("--home", args.home),
                                               ("--host", args.host)) if value]
    return compose_main([part for pair in given for part in pair] + args.compose_args)
