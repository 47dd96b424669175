"""Container verbs: run, create, start, ps, logs, exec, stop, kill, rm, wait, inspect, port, cp,
stats."""

from __future__ import annotations

import argparse
import sys
import time

from pytest_isobox import dockerargs
from pytest_isobox.cli.output import (
    _ago,
    _duration,
    _size,
    _table,
    compile_format,
    print_documents,
)
from pytest_isobox.cli.run_options import _spec_from_args
from pytest_isobox.engine import ContainerNotFound, ContainerState, Engine, IsoboxError


def cmd_run(engine: Engine, args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    if args.detach:
        state = engine.run(spec)
        print(state.id)
        return 0
    if args.interactive or args.tty:
        return engine.run_attached(spec)
    state = engine.create(spec)
    try:
        engine.start(state.id)
        _copy_logs(engine, state.id, follow=True)
        return engine.wait(state.id)
    finally:
        if args.rm:
            _remove_quietly(engine, state.id)


def cmd_create(engine: Engine, args: argparse.Namespace) -> int:
    args.detach = True
    print(engine.create(_spec_from_args(args)).id)
    return 0


def _remove_quietly(engine: Engine, container: str) -> None:
    try:
        engine.remove(container, force=True)
    except ContainerNotFound:
        pass


def _copy_logs(engine: Engine, container: str, *, follow: bool, tail: int | None = None) -> None:
    outs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for stream, chunk in engine.logs(container, follow=follow, tail=tail):
        outs[stream].write(chunk)
        outs[stream].flush()


def cmd_start(engine: Engine, args: argparse.Namespace) -> int:
    for c in args.containers:
        engine.start(c)
        print(c)
    return 0


def cmd_ps(engine: Engine, args: argparse.Namespace) -> int:
    states = engine.containers(all=args.all)
    if args.quiet:
        for s in states:
            print(s.id[:12])
        return 0
    rows = [("CONTAINER ID", "IMAGE", "CREATED", "STATUS", "PORTS", "NAMES")]
    for s in states:
        rows.append((s.id[:12], s.image, _ago(s.created_at), _status(s), _ports(s), s.name))
    _table(rows)
    return 0


def _status(s: ContainerState) -> str:
    if s.status == "running":
        return f"Up {_duration(time.time() - (s.started_at or time.time()))}"
    if s.status == "exited":
        code = f"Exited ({s.exit_code})"
        return f"{code} {_ago(s.finished_at)}" if s.finished_at else code
    return s.status.capitalize()


def _ports(s: ContainerState) -> str:
    return ", ".join(f"{h}:{p}->{key}" for key, binds in s.ports.items() for h, p in binds)


def cmd_logs(engine: Engine, args: argparse.Namespace) -> int:
    _copy_logs(engine, args.container, follow=args.follow, tail=args.tail)
    return 0


def cmd_exec(engine: Engine, args: argparse.Namespace) -> int:
    env = dockerargs.parse_env(args.env)
    if args.interactive or args.tty:
        return engine.exec_attached(args.container, args.cmd, tty=args.tty,
                                    stdin=args.interactive, env=env, user=args.user,
                                    workdir=args.workdir)
    result = engine.exec(args.container, args.cmd, env=env, user=args.user,
                         workdir=args.workdir)
    sys.stdout.buffer.write(result.stdout)
    sys.stderr.buffer.write(result.stderr)
    return result.exit_code


def cmd_stop(engine: Engine, args: argparse.Namespace) -> int:
    for c in args.containers:
        engine.stop(c, timeout=args.time)
        print(c)
    return 0


def cmd_kill(engine: Engine, args: argparse.Namespace) -> int:
    for c in args.containers:
        engine.kill(c, args.signal)
        print(c)
    return 0


def cmd_rm(engine: Engine, args: argparse.Namespace) -> int:
    status = 0
    for c in args.containers:
        try:
            engine.remove(c, force=args.force)
            print(c)
        except IsoboxError as exc:
            print(f"isobox: {exc}", file=sys.stderr)
            status = 1
    return status


def cmd_wait(engine: Engine, args: argparse.Namespace) -> int:
    for c in args.containers:
        print(engine.wait(c))
    return 0


def cmd_inspect(engine: Engine, args: argparse.Namespace) -> int:
    """Containers, then images, networks and volumes by that name (Docker's order), or one
    --type; what is found is printed, each missing one named on stderr, exit 1 if any."""
    from pytest_isobox.cli import inspecting

    template = compile_format(args.format)
    docs, status = [], 0
    for ref in args.refs:
        try:
            docs.append(inspecting.find_document(engine, ref, args.type, size=args.size))
        except IsoboxError as exc:
            print(f"isobox: {exc}", file=sys.stderr)
            status = 1
    print_documents(docs, template)
    return status


def cmd_port(engine: Engine, args: argparse.Namespace) -> int:
    state = engine.state(args.container)
    wanted = None
    if args.port:
        wanted = args.port if "/" in args.port else f"{args.port}/tcp"
    for key, binds in state.ports.items():
        for host, port in binds:
            if wanted is None:
                print(f"{key} -> {host}:{port}")
            elif key == wanted:
                print(f"{host}:{port}")
    return 0


def cmd_cp(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.copying import copy_from, copy_to

    src, dst = args.src, args.dst
    if ":" in src and not src.startswith(("/", ".")):
        container, path = src.split(":", 1)
        copy_from(engine, container, path, dst)
    elif ":" in dst and not dst.startswith(("/", ".")):
        container, path = dst.split(":", 1)
        copy_to(engine, container, src, path)
    else:
        raise IsoboxError("cp: one of SRC and DEST must be CONTAINER:PATH")
    return 0


def cmd_stats(engine: Engine, args: argparse.Namespace) -> int:
    rows = [("CONTAINER ID", "NAME", "CPU TIME", "MEM USAGE", "MEM PEAK", "PIDS")]
    for c in args.containers:
        s, st = engine.stats(c), engine.state(c)
        rows.append((st.id[:12], st.name, f"{s.cpu_time_ns / 1e9:.2f}s", _size(s.memory_current),
                     _size(s.memory_peak), str(s.pids)))
    _table(rows)
    return 0
