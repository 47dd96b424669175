"""The flags of `run` and `create` and the ContainerSpec they make: one place for both."""

from __future__ import annotations

import argparse
from pathlib import Path

from pytest_isobox import dockerargs
from pytest_isobox.engine import ContainerSpec, PortSpec, parse_size, parse_ulimit


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
    p.add_argument("--cpus", type=float)
    p.add_argument("-c", "--cpu-shares", type=int)
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--ulimit", action="append", metavar="NAME=SOFT[:HARD]")
    p.add_argument("--read-only", action="store_true",
                   help="mount the container's root filesystem as read only")
    p.add_argument("--security-opt", action="append", metavar="OPT",
                   help="seccomp=unconfined turns the default seccomp profile off")
    p.add_argument("--init", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--network", "--net", action="append")
    p.add_argument("--network-alias", action="append")
    p.add_argument("-p", "--publish", action="append")
    p.add_argument("-v", "--volume", action="append")
    p.add_argument("--tmpfs", action="append")
    p.add_argument("--stop-signal")
    p.add_argument("--stop-timeout", type=float)
    p.add_argument("--pull", choices=["missing", "always", "never"],
                   help="pull the image from its registry: missing (default), always, never")
    p.add_argument("image")
    p.add_argument("cmd", nargs=argparse.REMAINDER)


def _spec_from_args(args: argparse.Namespace) -> ContainerSpec:
    mode, networks = dockerargs.network_choice(  # --network-alias: on the first network
        {n: (args.network_alias or ()) if i == 0 else () for i, n in
         enumerate(args.network or ())})
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = [args.entrypoint] if args.entrypoint else []
    return ContainerSpec(
        image=args.image,
        command=list(args.cmd) or None,
        entrypoint=entrypoint,
        env=dockerargs.parse_env(args.env),
        working_dir=args.workdir,
        user=args.user,
        hostname=args.hostname,
        name=args.name,
        labels=dockerargs.parse_labels(args.label),
        mem_limit=parse_size(args.memory),
        cpus=args.cpus,
        cpu_shares=args.cpu_shares,
        pids_limit=args.pids_limit,
        init=args.init,
        tty=args.tty,
        stdin_open=args.interactive,
        network_mode=mode,
        networks=networks,
        ports=[PortSpec.parse(p) for p in args.publish or ()],
        mounts=[dockerargs.parse_volume(v, Path.cwd()) for v in args.volume or ()]
        + [dockerargs.parse_tmpfs(t) for t in args.tmpfs or ()],
        stop_signal=args.stop_signal,
        stop_timeout=args.stop_timeout if args.stop_timeout is not None else 10.0,
        auto_remove=args.rm,
        ulimits=dict(parse_ulimit(u) for u in args.ulimit or ()),
        security_opt=list(args.security_opt or ()),
        read_only=args.read_only,
        # As with Docker, a container outlives the CLI unless it is a foreground --rm one.
        persistent=args.detach or not args.rm,
    )
