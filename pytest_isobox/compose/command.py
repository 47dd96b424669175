"""`isobox compose`: `[-f FILE...] [-p NAME] [--profile P] up [-d] [--build] | down [-v] | ps |
logs [-f] | exec SERVICE CMD | build | config`, on either engine.

`up` without -d starts the project, streams its logs until Ctrl-C (or until every container
has exited), then takes it down, as `docker compose up` does.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_isobox.compose.project import ComposeRun


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="isobox compose", description="Run compose projects.")
    top.add_argument("--engine", help="native (default, env ISOBOX_ENGINE) or docker")
    top.add_argument("--home", help="store directory of the native engine (env ISOBOX_HOME)")
    top.add_argument("-H", "--host", help="Docker daemon address for the docker engine")
    top.add_argument("-f", "--file", action="append", dest="files", metavar="FILE",
                     help="compose file (repeatable; default compose.yaml & co.)")
    top.add_argument("-p", "--project-name", help="project name (default: the directory's)")
    top.add_argument("--profile", action="append", default=[], help="enable a profile")
    top.add_argument("--env-file", action="append", dest="env_files", metavar="FILE",
                     help="variables for interpolation (default .env)")
    sub = top.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    p = sub.add_parser("up", help="create and start the services")
    p.add_argument("-d", "--detach", action="store_true", help="start and return")
    p.add_argument("--build", action="store_true", help="build images before starting")
    p.add_argument("--wait", action="store_true",
                   help="with -d: wait until the services with a healthcheck are healthy")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for each wait")
    p.add_argument("services", nargs="*")
    p = sub.add_parser("down", help="stop and remove containers and networks")
    p.add_argument("-v", "--volumes", action="store_true", help="remove volumes too")
    p.add_argument("--rmi", choices=["local"], help="local: remove the images built for "
                   "services without an image: name")
    sub.add_parser("ps", help="list the project's containers")
    p = sub.add_parser("logs", help="the services' output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("services", nargs="*")
    p = sub.add_parser("exec", help="run a command in a service's container")
    p.add_argument("-T", dest="no_tty", action="store_true",
                   help="no terminal (accepted for compose's sake: exec never allocates one)")
    p.add_argument("service")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("build", help="build the services' images")
    p.add_argument("services", nargs="*")
    sub.add_parser("config", help="print the merged, interpolated model")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    from pytest_isobox.compose import ComposeError
    from pytest_isobox.engine import IsoboxError

    args = _parser().parse_args(argv)
    try:
        from pytest_isobox.compose.model import load_project

        project = load_project(args.files, project_name=args.project_name,
                               profiles=args.profile, env_files=args.env_files)
        if args.verb == "config":
            return _config(project)
        run = _run(args, project)
        try:
            return VERBS[args.verb](run, args)
        finally:
            run.engine.close()
    except (ComposeError, IsoboxError) as exc:
        print(f"isobox compose: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, project: object) -> ComposeRun:
    from pytest_isobox.cli import _open
    from pytest_isobox.compose.project import ComposeRun

    engine = _open(argparse.Namespace(engine=args.engine, home=args.home, host=args.host))
    persistent = args.verb != "up" or args.detach
    return ComposeRun(engine, project, persistent=persistent,  # type: ignore[arg-type]
                      announce=lambda line: print(line, file=sys.stderr))


def _config(project: object) -> int:
    import yaml

    print(yaml.safe_dump(project.document, sort_keys=False), end="")  # type: ignore[attr-defined]
    return 0


def cmd_up(run: ComposeRun, args: argparse.Namespace) -> int:
    if args.detach:
        run.up(args.services, build=args.build, wait=args.wait, timeout=args.timeout)
        return 0
    try:
        run.up(args.services, build=args.build, timeout=args.timeout)
        _stream(run, list(run.states), follow=True)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        run.down()
    return 0


def cmd_down(run: ComposeRun, args: argparse.Namespace) -> int:
    run.down(volumes=args.volumes, local_images=args.rmi == "local")
    return 0


def cmd_ps(run: ComposeRun, args: argparse.Namespace) -> int:
    from pytest_isobox.compose.model import SERVICE_LABEL

    rows = [["NAME", "SERVICE", "STATUS", "PORTS"]]
    for state in run.containers():
        status = state.status if state.exit_code is None or state.running else \
            f"exited ({state.exit_code})"
        health = run.health(state.id).get("Status") if state.running else None
        if health:  # the healthcheck kept in the container, as `docker compose ps` shows it
            status += f" ({health})"
        ports = ", ".join(f"{host}:{port}->{key}" for key, bindings in state.ports.items()
                          for host, port in bindings)
        rows.append([state.name, state.labels.get(SERVICE_LABEL, ""), status, ports])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def cmd_logs(run: ComposeRun, args: argparse.Namespace) -> int:
    _stream(run, args.services or list(run.project.services), follow=args.follow)
    return 0


def cmd_exec(run: ComposeRun, args: argparse.Namespace) -> int:
    if not args.command:
        print("isobox compose exec: give a command to run", file=sys.stderr)
        return 2
    code, output = run.exec(args.service, list(args.command))
    sys.stdout.buffer.write(output)
    sys.stdout.flush()
    return code


def cmd_build(run: ComposeRun, args: argparse.Namespace) -> int:
    run.build(args.services or None)
    return 0


def _stream(run: ComposeRun, services: list[str], *, follow: bool) -> None:
    """Each service's output, lines prefixed `service  | `; with `follow`, until every one
    has ended (threads, one per container, joined in a loop Ctrl-C can interrupt)."""
    from pytest_isobox.compose import ComposeError

    width = max((len(s) for s in services), default=0)
    lock = threading.Lock()

    def pump(service: str, container: str) -> None:
        pending = b""
        for _, data in run.engine.logs(container, follow=follow):
            pending += data
            *lines, pending = pending.split(b"\n")
            with lock:
                for line in lines:
                    print(f"{service.ljust(width)}  | {line.decode('utf-8', 'replace')}",
                          flush=True)
        if pending:
            with lock:
                print(f"{service.ljust(width)}  | {pending.decode('utf-8', 'replace')}",
                      flush=True)

    threads = []
    for service in services:
        try:
            container = run.container_of(service).id
        except ComposeError:
            continue
        thread = threading.Thread(target=pump, args=(service, container), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)


VERBS = {"up": cmd_up, "down": cmd_down, "ps": cmd_ps, "logs": cmd_logs, "exec": cmd_exec,
         "build": cmd_build}


if __name__ == "__main__":
    raise SystemExit(main())
