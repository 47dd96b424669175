"""System verbs: df, system check, system prune."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pytest_isobox.cli.output import _size, _table
from pytest_isobox.engine import Engine


def cmd_df(engine: Engine, args: argparse.Namespace) -> int:
    usage = engine.disk_usage()
    rows = [("TYPE", "TOTAL", "SIZE")]
    for kind, entry in usage.items():
        rows.append((kind, str(entry.get("count", "")), _size(int(entry.get("size", 0)))))
    _table(rows)
    if args.verbose:  # Docker's `system df -v`: a layer several images stack is shared
        print("\nImages space usage:\n")
        rows = [("REPOSITORY", "TAG", "IMAGE ID", "SIZE", "SHARED SIZE", "UNIQUE SIZE")]
        for image in usage.get("Images", {}).get("per_image", []):
            short = image["id"].removeprefix("sha256:")[:12]
            for tag in image["tags"] or ["<none>:<none>"]:
                repo, _, name = tag.rpartition(":")
                rows.append((repo, name, short, _size(image["size"]),
                             _size(image["shared_size"]), _size(image["unique_size"])))
        _table(rows)
    return 0


def cmd_system_check(_: None, args: argparse.Namespace) -> int:
    from pytest_isobox import hostcheck

    now = hostcheck.current_state(hostcheck.known_homes([args.home] if args.home else []))
    if args.save:
        Path(args.save).write_text("".join(f"{line}\n" for line in now))
        return 0
    if args.baseline:
        try:
            before = Path(args.baseline).read_text().splitlines()
        except OSError as exc:
            print(f"isobox: cannot read the baseline {args.baseline}: {exc.strerror}",
                  file=sys.stderr)
            return 2
        now = hostcheck.diff(now, before)
    if args.json:
        print(json.dumps(now, indent=2))
    elif now:
        print("left behind:" if args.baseline else "isobox things on this host:")
        print("\n".join(f"  {line}" for line in now))
    else:
        print("nothing left behind")
    return 1 if now else 0


def cmd_system_prune(_: None, args: argparse.Namespace) -> int:
    from pytest_isobox import hostcheck

    homes = hostcheck.known_homes([args.home] if args.home else [])
    for line in hostcheck.prune(homes):
        print(f"removed {line}")
    left = hostcheck.current_state(homes)
    if left:
        print("still there (a live run's, a persistent container's, or not from these homes:"
              " `isobox --home DIR system prune` for another home):")
        print("\n".join(f"  {line}" for line in left))
    return 0


def cmd_compose(engine: None, args: argparse.Namespace) -> int:
    """Forwarded whole to pytest_isobox.compose.command (imported only for this verb)."""
    from pytest_isobox.compose.command import main as compose_main

    given = [(flag, value) for flag, value in (("--engine", args.engine), ("--home", args.home),
                                               ("--host", args.host)) if value]
    return compose_main([part for pair in given for part in pair] + args.compose_args)


def _client_version() -> dict:
    import platform

    from pytest_isobox._version import __version__
    from pytest_isobox.engine.documents import _go_arch

    return {"Platform": {"Name": "isobox"}, "Version": __version__,
            "Python": platform.python_version(), "Os": "linux",
            "Arch": _go_arch(platform.machine())}


def cmd_version(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli.output import compile_format

    template = compile_format(args.format)
    own = getattr(engine, "version_document", None)
    doc = {"Client": {**_client_version(), "Engine": engine.name},
           "Server": own() if own else None}
    if template is not None:
        print(template.render(doc))
        return 0
    client, server = doc["Client"], doc["Server"] or {}
    print("Client:")
    print(f" Version:        {client['Version']}")
    print(f" Python version: {client['Python']}")
    print(f" OS/Arch:        {client['Os']}/{client['Arch']}")
    print(f" Engine:         {engine.name}")
    print("\nServer:" + (f" {server['Platform']['Name']}" if server.get("Platform") else ""))
    print(f" Version:        {server.get('Version', '')}")
    if server.get("ApiVersion"):
        print(f" API version:    {server['ApiVersion']}")
    print(f" OS/Arch:        {server.get('Os', '')}/{server.get('Arch', '')}")
    print(f" Kernel Version: {server.get('KernelVersion', '')}")
    return 0


def cmd_info(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli.output import compile_format

    template = compile_format(args.format)
    own = getattr(engine, "system_info", None)
    if own is None:
        from pytest_isobox.engine import IsoboxError

        raise IsoboxError(f"info: not supported by the {engine.name} engine")
    info = own()
    if template is not None:
        print(template.render(info))
        return 0
    lines = [
        "Client:", f" Version: {_client_version()['Version']}", f" Engine: {engine.name}", "",
        "Server:",
        f" Containers: {info.get('Containers', 0)}",
        f"  Running: {info.get('ContainersRunning', 0)}",
        f"  Paused: {info.get('ContainersPaused', 0)}",
        f"  Stopped: {info.get('ContainersStopped', 0)}",
        f" Images: {info.get('Images', 0)}",
        f" Server Version: {info.get('ServerVersion', '')}",
        f" Storage Driver: {info.get('Driver', '')}",
        f" Cgroup Driver: {info.get('CgroupDriver', '')}",
        f" Cgroup Version: {info.get('CgroupVersion', '')}",
        " Security Options:", *(f"  {o}" for o in info.get("SecurityOptions") or []),
        f" Kernel Version: {info.get('KernelVersion', '')}",
        f" Operating System: {info.get('OperatingSystem', '')}",
        f" OSType: {info.get('OSType', '')}",
        f" Architecture: {info.get('Architecture', '')}",
        f" CPUs: {info.get('NCPU', 0)}",
        f" Total Memory: {_size(int(info.get('MemTotal') or 0))}",
        f" Name: {info.get('Name', '')}",
        f" Root Dir: {info.get('DockerRootDir', '')}",
    ]
    print("\n".join(lines))
    return 0
