"""The `isobox` command: Docker's verbs and flags over the Engine interface.

A thin layer: it parses arguments into engine calls and formats results as Docker does, so a
user needs nothing new. It knows no engine internals. Every command loads this module, so it
holds only the dispatch: the verbs' plain forms are read by cli/quickargs.py, anything else by
the argparse parser of cli/arguments.py, and each verb's code lives in the module it names.
"""

from __future__ import annotations

import gc
import os
import sys

from pytest_isobox.engine.errors import IsoboxError
from pytest_isobox.engine.registry import open_engine

TYPE_CHECKING = False
if TYPE_CHECKING:  # (argparse and typing load only where a parser is built: not for `ps`)
    import argparse
    from collections.abc import Callable, Sequence

    from pytest_isobox.engine import Engine

# Docker's exit statuses for `run` when the container did not run at all.
EXIT_ENGINE_ERROR = 125


def main(argv: Sequence[str] | None = None) -> int:
    """`isobox ARGV`; without `argv`, this process is the command and sys.argv its words."""
    if argv is not None:
        return _main(list(argv))
    code = _main(sys.argv[1:])
    # What the command made (its imports, a container's worth of objects) goes with its
    # process: the interpreter's last collection at exit would walk it all for nothing, about
    # 1.5 ms of a cached `build -q`. (Not for main([...]) called within a longer process.)
    gc.freeze()
    return code


def _main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:  # the Docker API server parses its own (dockerd's) flags
        from pytest_isobox.server.command import main as serve

        return serve(argv[1:])
    # A command allocates its imports and one container's worth of objects, nearly all kept
    # to its end: at the default threshold (700) the collector runs some 40 times over them,
    # 6-12 ms of `run --rm IMAGE true`. It still runs (a long `build`, `logs -f`), rarely.
    gc.set_threshold(50_000, 20, 10)
    from pytest_isobox.cli import quickargs

    args = quickargs.parse(argv)  # a read-only verb's plain flags: no argparse (see there)
    if args is None:  # help, an error, a form quickargs leaves to argparse: the whole parser
        from pytest_isobox.cli.arguments import UsageError, chosen_verb
        from pytest_isobox.cli.arguments import parser as verb_parser

        parser = verb_parser(chosen_verb(argv))
        try:
            args = parser.parse_args(argv)
        except UsageError as exc:
            print(exc, file=sys.stderr)
            return EXIT_ENGINE_ERROR
        if not getattr(args, "func", None):
            group = getattr(args, "group_help", None)  # `isobox network`: that group's verbs
            (group or parser).print_help()
            return 0 if group else 2
    verb = args.verb = args.func
    args.func = _command(verb)
    if getattr(args, "no_engine", False):  # verbs of the host or a registry, never an engine
        try:
            return args.func(None, args) or 0
        except IsoboxError as exc:
            print(f"isobox: {exc}", file=sys.stderr)
            return 1
    try:
        engine = _open(args)
    except IsoboxError as exc:
        print(f"isobox: {exc}", file=sys.stderr)
        return EXIT_ENGINE_ERROR
    try:
        return args.func(engine, args) or 0
    except IsoboxError as exc:
        print(f"isobox: {exc}", file=sys.stderr)
        return EXIT_ENGINE_ERROR if verb in ("containers:cmd_run", "containers:cmd_create") \
            else 1
    except Exception as exc:
        gotemplate = sys.modules.get("pytest_isobox.gotemplate")  # loaded by --format only
        if gotemplate is None or not isinstance(exc, gotemplate.TemplateError):
            raise
        print(f"isobox: template parsing error: {exc}", file=sys.stderr)
        return EXIT_ENGINE_ERROR
    except KeyboardInterrupt:
        return 130
    finally:
        engine.close()


def _command(where: str) -> Callable:
    """The verb's function, its module imported only now: `isobox ps` loads no build code."""
    module, _, name = where.partition(":")
    return getattr(__import__(f"pytest_isobox.cli.{module}", fromlist=(name,)), name)


# Verbs that only look: their engine sweeps nothing and makes nothing (`docker ps` is a query).
READ_ONLY_VERBS = {
    "containers:cmd_ps", "containers:cmd_inspect", "containers:cmd_logs", "containers:cmd_port",
    "containers:cmd_stats", "images:cmd_images", "images:cmd_image_inspect",
    "networks:cmd_network_ls", "networks:cmd_network_inspect", "volumes:cmd_volume_ls",
    "events:cmd_events",
}


# Verbs that start at most one container: nothing is to be made ahead for a next one.
ONE_CONTAINER_VERBS = {"containers:cmd_run", "containers:cmd_create", "containers:cmd_start",
                       "containers:cmd_restart"}


def _open(args: argparse.Namespace) -> Engine:
    kind = args.engine or os.environ.get("ISOBOX_ENGINE", "native")
    pull = getattr(args, "pull", None)
    options: dict = {"read_only": True} if getattr(args, "verb", None) in READ_ONLY_VERBS else {}
    if kind == "native":
        home = args.home or os.environ.get("ISOBOX_HOME")
        if home:
            options["home"] = home
        if pull:
            options["pull"] = pull
        if not options.get("read_only"):  # this process exits at once: its reaper finishes
            options["finish_in_reaper"] = True
        if getattr(args, "verb", None) in ONE_CONTAINER_VERBS:
            options["spares"] = False
        if getattr(args, "verb", None) == "images:cmd_build":
            options["cached_build"] = True  # a fully cached build opens no engine
        if getattr(args, "verb", None) == "containers:cmd_run":  # it starts what it creates
            options["shim_at_create"] = True
    else:
        if args.host:
            options["base_url"] = args.host
        if pull and kind == "docker":
            options["pull"] = pull
    engine = open_engine(kind, **options)
    policy = getattr(engine, "pull_policy", None)
    if policy is not None and sys.stderr.isatty():
        from pytest_isobox.images.registry.progress import ProgressPrinter

        policy.progress = ProgressPrinter()
    return engine
