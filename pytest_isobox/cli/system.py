"""System verbs: df, system check (--prune: what dead runs left), system prune (Docker's)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pytest_isobox.cli.output import _size, _table
from pytest_isobox.engine import Engine

_DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
               "Reclaimable": "RECLAIMABLE"}
_DF_TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
_DF_TYPES = {"Volumes": "Local Volumes"}  # Docker's row names


def _df_rows(usage: dict[str, dict]) -> list[dict]:
    """Docker's `system df` rows: RECLAIMABLE with its share of SIZE, as the Docker CLI."""
    rows = []
    for kind, entry in usage.items():
        size, reclaimable = int(entry.get("size", 0)), entry.get("reclaimable")
        share = ""
        if reclaimable is not None:
            share = _size(int(reclaimable), 4) + (
                f" ({int(reclaimable) * 100 // size}%)" if size > 0 else "")
        rows.append({"Type": _DF_TYPES.get(kind, kind), "TotalCount": str(entry.get("count", "")),
                     "Active": str(entry.get("active", "")), "Size": _size(size, 4),
                     "Reclaimable": share})
    return rows


def cmd_df(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli.output import compile_format
    from pytest_isobox.gotemplate import render_rows

    template = getattr(args, "format", None) or _DF_TABLE
    compile_format(template)
    usage = engine.disk_usage()
    for line in render_rows(template, _df_rows(usage), _DF_HEADERS, default_table=_DF_TABLE):
        print(line)
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

    hostcheck.wait_for_finishers()  # a run that just ended: its reaper's last steps
    if args.prune:
        return _prune_leftovers(args)
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


def _prune_leftovers(args: argparse.Namespace) -> int:
    """`system check --prune`: remove what runs that died left on this host (isobox's own
    things only: the engine's sweep of each home), then list what stays."""
    from pytest_isobox import hostcheck

    homes = hostcheck.known_homes([args.home] if args.home else [])
    for line in hostcheck.prune(homes):
        print(f"removed {line}")
    left = hostcheck.current_state(homes)
    if left:
        print("still there (a live run's, a persistent container's, or not from these homes:"
              " `isobox --home DIR system check --prune` for another home):")
        print("\n".join(f"  {line}" for line in left))
    return 0


def cmd_system_prune(_: None, args: argparse.Namespace) -> int:
    """Docker's `system prune`, on the engine (asks first unless -f; without a terminal it
    refuses rather than ask)."""
    from pytest_isobox.cli import _open

    engine = _open(args)
    try:
        return _docker_system_prune(engine, args)
    finally:
        engine.close()


def _docker_system_prune(engine: Engine, args: argparse.Namespace) -> int:
    """Docker's order and output: stopped containers, unused networks, (--volumes) unused
    volumes, dangling images (-a: every unused one), then the build cache. `--filter
    label=K[=V]` keeps it to the objects so labelled (the build cache is left then)."""
    from pytest_isobox.cli.filters import label_matches, parse_filters
    from pytest_isobox.cli.networks import _confirm
    from pytest_isobox.engine import IsoboxError

    filters = parse_filters(args.filter, ("label",))

    def labelled(labels: dict) -> bool:
        return all(label_matches(labels or {}, v) for v in filters.get("label", ()))

    what = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        what.append("all volumes not used by at least one container")
    what.append("all images without at least one container associated to them" if args.all
                else "all dangling images")
    if not args.force and not _confirm("remove:\n  - " + "\n  - ".join(what)):
        return 0
    containers = engine.containers(all=True)
    gone = [c for c in containers if c.status in ("exited", "created", "dead")
            and labelled(c.labels)]
    deleted: dict[str, list[str]] = {"Containers": [], "Networks": [], "Volumes": [],
                                     "Images": []}
    for state in gone:
        try:
            engine.remove(state.id, force=False)
            deleted["Containers"].append(state.id)
        except IsoboxError:  # started or removed meanwhile
            continue
    left = [c for c in containers if c not in gone]
    for info in engine.networks():
        if info.name in ("bridge", "host", "none") or info.containers \
                or not labelled(info.labels):
            continue
        try:
            engine.network_remove(info.name)
            deleted["Networks"].append(info.name)
        except IsoboxError:
            continue
    if args.volumes:
        from pytest_isobox.cli import inspecting

        for name in engine.volumes():
            try:
                doc = inspecting.volume_document(engine, name)
                if labelled(doc.get("Labels") or {}):
                    engine.volume_remove(name, force=False)  # refused for one in use
                    deleted["Volumes"].append(name)
            except IsoboxError:
                continue
    used = {c.image_id for c in left}
    for image in engine.images():
        labels = (image.config.get("config") or image.config).get("Labels") or {}
        if image.id in used or (image.tags and not args.all) or not labelled(labels):
            continue
        try:
            engine.remove_image(image.id, force=False)
            deleted["Images"].append(f"deleted: {image.id}")
        except IsoboxError:  # a child image or a container needs it
            continue
    reclaimed = 0 if filters else int(engine.prune() or 0)
    for kind, names in deleted.items():
        if names:
            print(f"Deleted {kind}:")
            print("\n".join(names))
            print()
    print(f"Total reclaimed space: {_size(reclaimed)}")
    return 0


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
