"""Image verbs: build, pull, push, login, logout, images, rmi, tag, image inspect, import, save,
load, prune, bootstrap."""

from __future__ import annotations

import os
import sys

from pytest_isobox.cli.output import (
    _ago,
    _short,
    _size,
    _table,
    check_format,
    render_table,
)
from pytest_isobox.engine import IsoboxError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: `isobox images` and a cached `build -q` load neither argparse nor the specs)
    import argparse

    from pytest_isobox.engine import BuildStep, Engine


def cmd_build(engine: Engine, args: argparse.Namespace) -> int:
    tags = list(args.tag or [])
    labels, buildargs = {}, {}
    if args.label or args.build_arg:  # (dockerargs loads the specs' dataclasses)
        from pytest_isobox import dockerargs

        labels = dockerargs.parse_labels(args.label)
        buildargs = dockerargs.parse_env(args.build_arg)
    stream = args.progress in ("plain", "auto", "tty") and not args.quiet
    shown: set[int] = set()

    def show(step: BuildStep) -> None:
        if step.index in shown:  # its header and output went out as they came
            if step.image_id:
                print(f" ---> {_short(step.image_id)} ({step.seconds * 1000:.0f} ms)",
                      flush=True)
            return
        print(_format_step(step), flush=True)

    def output(step: BuildStep, text: str) -> None:
        if step.index not in shown:
            shown.add(step.index)
            print(f"Step {step.index}/{step.total} : {step.instruction}", flush=True)
        for line in text.splitlines(keepends=True):
            sys.stdout.write(" " + line)
        sys.stdout.flush()

    options: dict = {}
    if not args.quiet:
        options["on_note"] = lambda note: print(note, flush=True)  # which builder, and why
    if labels:
        options["labels"] = labels
    if args.pull == "always":
        options["pull"] = True
    if stream:
        options["on_output"] = output

    def build(context: str) -> str:
        return engine.build(
            context, dockerfile=args.file, tag=tags[0] if tags else None,
            buildargs=buildargs, target=args.target, no_cache=args.no_cache,
            network=args.network, on_step=None if args.quiet else show, **options)

    if args.path == "-":
        import tempfile

        with tempfile.TemporaryDirectory(prefix="isobox-build-") as tmp:
            _stdin_context(tmp)
            image_id = build(tmp)
    else:
        image_id = build(args.path)
    for extra in tags[1:]:
        engine.tag(image_id, extra)
    if args.iidfile:
        from pathlib import Path

        Path(args.iidfile).write_text(image_id)
    if args.quiet:
        print(image_id)
    else:
        print(f"Successfully built {_short(image_id)}")
        for tag in tags:
            print(f"Successfully tagged {tag}")
    return 0


def _stdin_context(tmp: str) -> None:
    """`build -`: stdin is a tar of the context, or else the Dockerfile alone (no context),
    written into the directory `tmp`."""
    import io
    import tarfile
    from pathlib import Path

    from pytest_isobox.images.tarsafe import extract_context

    data = sys.stdin.buffer.read()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*"):
            is_tar = True
    except (tarfile.TarError, EOFError, OSError):
        is_tar = False
    if is_tar:
        extract_context(Path(tmp), io.BytesIO(data), "build -: the context tar on stdin")
    else:
        Path(tmp, "Dockerfile").write_bytes(data)


def _format_step(step: BuildStep) -> str:
    """Docker's classic build output: the step, then the cache or run outcome and its time."""
    lines = [f"Step {step.index}/{step.total} : {step.instruction}"]
    if step.cached:
        lines.append(" ---> Using cache")
    elif step.output:
        lines.extend(" " + line for line in step.output.rstrip("\n").splitlines())
    if step.image_id:
        lines.append(f" ---> {_short(step.image_id)} ({step.seconds * 1000:.0f} ms)")
    return "\n".join(lines)


def cmd_pull(engine: Engine, args: argparse.Namespace) -> int:
    pull = getattr(engine, "pull", None)
    if pull is None:
        raise IsoboxError(f"pull: not supported by the {engine.name} engine")
    from pytest_isobox.images.registry.progress import ProgressPrinter

    printer = ProgressPrinter(open(os.devnull, "w") if args.quiet else sys.stderr)  # noqa: SIM115
    image_id = pull(args.image, printer, platform=args.platform) if args.platform \
        else pull(args.image, printer)
    printer.finish()
    if not args.quiet:
        print(f"Status: pulled {args.image} ({image_id})", file=sys.stderr)
    print(args.image)
    return 0


def cmd_bootstrap(engine: Engine, args: argparse.Namespace) -> int:
    make = getattr(engine, "bootstrap", None)
    if make is None:
        raise IsoboxError(f"bootstrap: not supported by the {engine.name} engine")
    include = [p for part in args.include or () for p in part.split(",") if p]
    image_id = make(args.name, variant=args.variant, include=include, tag=args.tag,
                    log=lambda line: print(line, file=sys.stderr))
    print(image_id)
    return 0


def cmd_push(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox import dockerargs

    store = getattr(engine, "images_store", None)
    push = store.push if store is not None else getattr(engine, "push", None)
    if push is None:
        raise IsoboxError(f"push: not supported by the {engine.name} engine")
    from pytest_isobox.images.registry.progress import ProgressPrinter

    printer = ProgressPrinter(open(os.devnull, "w") if args.quiet else sys.stderr,  # noqa: SIM115
                              verb="Push")
    chunk = dockerargs.parse_size(args.chunk_size) if args.chunk_size else None
    digest = push(args.image, printer, chunk_size=chunk)
    printer.finish()
    print(f"{args.image}: digest: {digest}")
    return 0


def cmd_login(_: None, args: argparse.Namespace) -> int:
    from pytest_isobox.images.registry.login import login

    password = args.password
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    username = args.username
    if username is None or password is None:
        import getpass

        if username is None:
            username = input("Username: ")
        if password is None:
            password = getpass.getpass("Password: ")
    where = login(args.server, username, password)
    print(f"Login Succeeded (credentials in {where})")
    return 0


def cmd_logout(_: None, args: argparse.Namespace) -> int:
    from pytest_isobox.images.registry.login import logout

    server = args.server or "docker.io"
    if logout(server):
        print(f"Removing login credentials for {server}")
    else:
        print(f"Not logged in to {server}")
    return 0


_IMAGE_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG",
                  "Digest": "DIGEST", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                  "Size": "SIZE", "Containers": "CONTAINERS"}
_IMAGES_TABLE = "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
_IMAGES_DIGESTS = ("table {{.Repository}}\\t{{.Tag}}\\t{{.Digest}}\\t{{.ID}}\\t"
                   "{{.CreatedSince}}\\t{{.Size}}")


def cmd_images(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli.filters import (
        bool_value,
        label_matches,
        parse_filters,
        reference_matches,
    )
    from pytest_isobox.engine.documents import parse_time

    filters = parse_filters(args.filter, ("reference", "dangling", "label", "before", "since"))
    template = "{{.ID}}" if args.quiet else args.format
    if template is None:
        template = _IMAGES_DIGESTS if args.digests else _IMAGES_TABLE
    check_format(template)  # a bad template fails before any work
    dangling = [bool_value(v, "dangling") for v in filters.get("dangling", ())]
    infos = engine.images()
    created = {t: parse_time(i.created) or 0 for i in infos for t in [*i.tags, i.id]}
    infos.sort(key=lambda i: parse_time(i.created) or 0, reverse=True)
    rows, seen = [], set()
    for info in infos:
        if dangling:
            if not any(d == (not info.tags) for d in dangling):
                continue
        elif not (args.all or info.tags):
            continue  # as Docker, untagged images (a build's steps) show only with -a
        when = parse_time(info.created)
        labels = dict(((info.config.get("config") or {}).get("Labels")) or {})
        if not all(label_matches(labels, v) for v in filters.get("label", ())):
            continue
        if any((when or 0) >= created.get(v, 0) for v in filters.get("before", ())):
            continue
        if any((when or 0) <= created.get(v, float("inf")) for v in filters.get("since", ())):
            continue
        digests = _digests(engine, info.id) if args.digests or "Digest" in template else []
        wanted = [*filters.get("reference", ()), *([args.reference] if args.reference else [])]
        for ref in info.tags or ["<none>:<none>"]:
            if not all(reference_matches([ref], v) for v in wanted):
                continue  # a row per tag, as Docker: only the tags that match
            repo, _, tag = ref.rpartition(":")
            digest = next((d.partition("@")[2] for d in digests
                           if d.partition("@")[0] == repo), "<none>")
            row = {
                "ID": info.id if args.no_trunc else _short(info.id),
                "Repository": repo, "Tag": tag, "Digest": digest,
                "CreatedSince": _ago(when) if when else "N/A",
                "CreatedAt": _created_at(when), "Size": _size(info.size),
                "Containers": "N/A",
            }
            if args.quiet:
                if row["ID"] in seen:
                    continue
                seen.add(row["ID"])
            rows.append(row)
    default = _IMAGES_DIGESTS if args.digests else _IMAGES_TABLE
    for line in render_table(template, rows, _IMAGE_HEADERS, default_table=default):
        print(line)
    return 0


def _digests(engine: Engine, image_id: str) -> list[str]:
    from pytest_isobox.cli import inspecting

    try:
        return list(inspecting.image_document(engine, image_id).get("RepoDigests") or [])
    except IsoboxError:
        return []


def _created_at(when: float | None) -> str:
    if not when:
        return ""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(when), UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def cmd_rmi(engine: Engine, args: argparse.Namespace) -> int:
    for ref in args.images:
        engine.remove_image(ref, force=args.force)
        print(f"Untagged: {ref}" if ":" in ref and not ref.startswith("sha256:") else
              f"Deleted: {ref}")
    return 0


def cmd_tag(engine: Engine, args: argparse.Namespace) -> int:
    engine.tag(args.source, args.target)
    return 0


def cmd_image_inspect(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli import inspecting

    return inspecting.print_inspected(
        args.images, lambda ref: inspecting.image_document(engine, ref), args.format)


def cmd_import(engine: Engine, args: argparse.Namespace) -> int:
    print(engine.import_rootfs(args.source, args.ref))
    return 0


def cmd_save(engine: Engine, args: argparse.Namespace) -> int:
    engine.save_images(args.images, args.output)
    return 0


def cmd_load(engine: Engine, args: argparse.Namespace) -> int:
    for ref in engine.load_images(args.input):
        print(f"Loaded image: {ref}")
    return 0


def cmd_prune(engine: Engine, args: argparse.Namespace) -> int:
    reclaimed = engine.prune()
    print(f"Total reclaimed space: {_size(int(reclaimed))}")
    return 0


def cmd_image_history(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli import inspecting
    from pytest_isobox.cli.output import _ago

    rows = inspecting.image_history(engine, args.image)
    if args.quiet:
        for row in rows:
            print(row["Id"] if row["Id"] == "<missing>" else _short(row["Id"]))
        return 0
    table = [("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")]
    for row in rows:
        by = row["CreatedBy"] if args.no_trunc or len(row["CreatedBy"]) <= 45 \
            else row["CreatedBy"][:44] + "…"
        table.append((row["Id"] if row["Id"] == "<missing>" else _short(row["Id"]),
                      _ago(row["Created"]) if row["Created"] else "", by, _size(row["Size"]),
                      row["Comment"]))
    _table(table)
    return 0
