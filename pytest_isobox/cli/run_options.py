"""The flags of `run` and `create` and the ContainerSpec they make: one place for both."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_isobox import dockerargs, run_options_table
from pytest_isobox.engine import ContainerSpec, InvalidSpec, PortSpec, parse_size, parse_ulimit

TYPE_CHECKING = False
if TYPE_CHECKING:  # (argparse loads only where a parser is built: cli/quickargs.py reads these
    import argparse  # flags for a plain `run` without it)

_REMAINDER = "..."  # argparse.REMAINDER: every word left


def _bad(message: str) -> Exception:
    """argparse's error for a flag's bad value (argparse words it)."""
    import argparse

    return argparse.ArgumentTypeError(message)


def _cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(f"invalid argument {text!r}: expected a number of "
                                         "CPUs, e.g. 1.5") from None
    if value <= 0:
        raise _bad(f"invalid argument {text!r}: must be > 0")
    return value


def _natural(text: str) -> int:
    if not text.isdigit():
        raise _bad(f"invalid argument {text!r}: expected a whole number")
    return int(text)


def _boolean(text: str) -> bool:
    """Docker's boolean flag values (`--sig-proxy=false`)."""
    value = {"true": True, "1": True, "t": True, "false": False, "0": False, "f": False}.get(
        text.strip().lower())
    if value is None:
        raise _bad(f"invalid argument {text!r}: expected true or false")
    return value


def _stream(text: str) -> str:
    name = text.strip().lower()
    if name not in ("stdin", "stdout", "stderr"):
        raise _bad(f"invalid argument {text!r}: valid streams are "
                                         "STDIN, STDOUT and STDERR")
    return name


def _mount(text: str):  # -> MountSpec
    """`--mount`: unlike -v, a bind source that does not exist is refused (Docker's rule),
    here, so that no engine makes it (a daemon given Binds would)."""
    mount = dockerargs.parse_mount(text, Path.cwd())
    if mount.type == "bind" and not os.path.exists(mount.source):
        raise InvalidSpec(f'invalid mount config for type "bind": bind source path does not '
                          f"exist: {mount.source}")
    return mount


def check_cidfile(args: argparse.Namespace) -> None:
    """--cidfile must not exist yet (Docker's rule: another container may own it)."""
    if getattr(args, "cidfile", None) and os.path.exists(args.cidfile):
        raise InvalidSpec(f"container ID file found, make sure the other container isn't "
                          f"running or delete {args.cidfile}")


def write_cidfile(args: argparse.Namespace, container_id: str) -> None:
    if getattr(args, "cidfile", None):
        try:
            with open(args.cidfile, "x") as f:
                f.write(container_id)
        except OSError as exc:
            raise InvalidSpec(f"cannot write --cidfile {args.cidfile}: {exc.strerror}"
                              ) from None


def _container_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", metavar="K=V")
    p.add_argument("-l", "--label", action="append", metavar="K=V")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("-h", "--hostname")
    p.add_argument("--entrypoint")
    p.add_argument("-m", "--memory", help="memory limit, e.g. 256m")
    p.add_argument("--cpus", type=_cpus)
    p.add_argument("-c", "--cpu-shares", type=int)
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--ulimit", action="append", metavar="NAME=SOFT[:HARD]")
    for row in run_options_table.TABLE:  # the simple options, one row each
        p.add_argument(*row.flags, dest=row.field, **row.cli)
    p.add_argument("--security-opt", action="append", metavar="OPT",
                   help="seccomp=unconfined turns the default seccomp profile off")
    p.add_argument("--device", action="append", metavar="HOST[:CONTAINER][:PERMS]",
                   help="give the container a host device node")
    p.add_argument("--sysctl", action="append", metavar="KEY=VALUE",
                   help="namespaced kernel parameters: net.*, kernel.shm*, kernel.msg*, "
                        "kernel.sem, fs.mqueue.*")
    p.add_argument("--env-file", action="append", metavar="FILE",
                   help="KEY=VALUE lines (KEY alone: this environment's value)")
    p.add_argument("--label-file", action="append", metavar="FILE")
    p.add_argument("-P", "--publish-all", action="store_true",
                   help="publish every exposed port on a free port of 127.0.0.1 (Docker: "
                        "0.0.0.0)")
    p.add_argument("--expose", action="append", metavar="PORT[/PROTO]")
    p.add_argument("--ip", help="IPv4 address on the (user-defined) network")
    p.add_argument("--cidfile", help="write the container's id to this (new) file")
    p.add_argument("--platform", help="only this host's platform is accepted")
    p.add_argument("--restart", metavar="POLICY",
                   help="no, on-failure[:N], always, unless-stopped")
    p.add_argument("--health-cmd", metavar="CMD")
    p.add_argument("--health-interval", metavar="DURATION")
    p.add_argument("--health-timeout", metavar="DURATION")
    p.add_argument("--health-retries", type=_natural, metavar="N")
    p.add_argument("--health-start-period", metavar="DURATION")
    p.add_argument("--no-healthcheck", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--network", "--net", action="append")
    p.add_argument("--network-alias", action="append")
    p.add_argument("-p", "--publish", action="append", metavar="[IP:][HOST:]PORT[/PROTO]",
                   help="publish a port; without IP on 127.0.0.1 (Docker: 0.0.0.0)")
    p.add_argument("-v", "--volume", action="append")
    p.add_argument("--tmpfs", action="append")
    p.add_argument("--mount", action="append", metavar="type=bind|volume|tmpfs,...",
                   help="source=, target=, readonly, tmpfs-size= (a bind source must exist)")
    p.add_argument("-a", "--attach", action="append", type=_stream, metavar="STREAM",
                   help="run: copy only these of STDOUT, STDERR (STDIN: with -i)")
    p.add_argument("--sig-proxy", type=_boolean, nargs="?", const=True, default=True,
                   metavar="BOOL", help="run: pass the signals this command gets to the "
                   "container (default true)")
    p.add_argument("--stop-signal")
    p.add_argument("--stop-timeout", type=float)
    p.add_argument("--pull", choices=["missing", "always", "never"],
                   help="pull the image from its registry: missing (default), always, never")
    p.add_argument("image")
    p.add_argument("cmd", nargs=_REMAINDER)


def _spec_from_args(args: argparse.Namespace) -> ContainerSpec:
    mode, networks = dockerargs.network_choice(  # --network-alias: on the first network
        {n: (args.network_alias or ()) if i == 0 else () for i, n in
         enumerate(args.network or ())})
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = [args.entrypoint] if args.entrypoint else []
    env_files = [e for f in args.env_file or () for e in
                 dockerargs.parse_key_value_file(f, from_environment=True)]
    label_files = [e for f in args.label_file or () for e in
                   dockerargs.parse_key_value_file(f, from_environment=False)]
    if args.attach and args.detach:
        raise InvalidSpec("conflicting options: cannot specify both --attach and --detach")
    restart = dockerargs.parse_restart(args.restart)
    if restart is not None and restart.name != "no" and args.rm:
        raise InvalidSpec("conflicting options: --restart and --rm")
    return ContainerSpec(
        image=args.image,
        command=list(args.cmd) or None,
        entrypoint=entrypoint,
        env=dockerargs.parse_env([*env_files, *(args.env or ())]),
        working_dir=dockerargs.check_working_dir(args.workdir),
        user=args.user,
        hostname=args.hostname,
        name=args.name,
        labels=dockerargs.parse_labels([*label_files, *(args.label or ())]),
        mem_limit=parse_size(args.memory),
        cpus=args.cpus,
        cpu_shares=args.cpu_shares,
        pids_limit=args.pids_limit,
        tty=args.tty,
        stdin_open=args.interactive,
        network_mode=mode,
        networks=networks,
        ports=[PortSpec.parse(p) for p in args.publish or ()],
        mounts=[dockerargs.parse_volume(v, Path.cwd()) for v in args.volume or ()]
        + [dockerargs.parse_tmpfs(t) for t in args.tmpfs or ()]
        + [_mount(m) for m in args.mount or ()],
        stop_signal=args.stop_signal,
        stop_timeout=args.stop_timeout if args.stop_timeout is not None else 10.0,
        auto_remove=args.rm,
        ulimits=dict(parse_ulimit(u) for u in args.ulimit or ()),
        security_opt=list(args.security_opt or ()),
        publish_all=args.publish_all,
        expose=[k for e in args.expose or () for k in dockerargs.parse_expose(e)],
        sysctls=dict(dockerargs.parse_sysctl(s, mode if not networks else "bridge")
                     for s in args.sysctl or ()),
        ip=dockerargs.parse_ip(args.ip, "--ip") if args.ip else None,
        devices=[dockerargs.parse_device(d) for d in args.device or ()],
        platform=dockerargs.check_platform(args.platform),
        restart=restart,
        healthcheck=dockerargs.healthcheck(
            args.health_cmd, interval=args.health_interval, timeout=args.health_timeout,
            retries=args.health_retries, start_period=args.health_start_period,
            disabled=args.no_healthcheck),
        **run_options_table.spec_values({row.field: getattr(args, row.field)
                                         for row in run_options_table.TABLE}),
        # As with Docker, a container outlives the CLI unless it is a foreground --rm one.
        persistent=args.detach or not args.rm,
    )
