"""The `isobox` command: Docker's verbs and flags over the Engine interface.

A thin layer: it parses arguments into engine calls and formats results as Docker does, so a
user needs nothing new. It knows no engine internals.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pytest_isobox import dockerargs
from pytest_isobox._version import __version__
from pytest_isobox.engine import (
    PERSISTENT_LABEL,
    BuildStep,
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    Engine,
    ImageNotFound,
    InvalidSpec,
    IsoboxError,
    NetworkInfo,
    PortSpec,
    open_engine,
    parse_size,
    parse_ulimit,
)

# Docker's exit statuses for `run` when the container did not run at all.
EXIT_ENGINE_ERROR = 125


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
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
        return EXIT_ENGINE_ERROR if args.func in (cmd_run, cmd_create) else 1
    except KeyboardInterrupt:
        return 130
    finally:
        engine.close()


def _open(args: argparse.Namespace) -> Engine:
    kind = args.engine or os.environ.get("ISOBOX_ENGINE", "native")
    pull = getattr(args, "pull", None)
    if kind == "native":
        home = args.home or os.environ.get("ISOBOX_HOME")
        options: dict = {"home": home} if home else {}
        if pull:
            options["pull"] = pull
        engine = open_engine("native", **options)
    else:
        engine = open_engine(kind, **({"base_url": args.host} if args.host else {}))
    policy = getattr(engine, "pull_policy", None)
    if policy is not None and sys.stderr.isatty():
        from pytest_isobox.images.registry.progress import ProgressPrinter

        policy.progress = ProgressPrinter()
    return engine


# --------------------------------------------------------------------------- containers

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
        cap_add=dockerargs.parse_capabilities(args.cap_add),
        cap_drop=dockerargs.parse_capabilities(args.cap_drop),
        privileged=args.privileged,
        extra_hosts=[dockerargs.parse_extra_host(h) for h in args.add_host or ()],
        dns=[dockerargs.parse_ip(d) for d in args.dns or ()],
        dns_search=list(args.dns_search or ()),
        dns_options=list(args.dns_option or ()),
        publish_all=args.publish_all,
        expose=[k for e in args.expose or () for k in dockerargs.parse_expose(e)],
        shm_size=parse_size(args.shm_size),
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
        # As with Docker, a container outlives the CLI unless it is a foreground --rm one.
        persistent=args.detach or not args.rm,
    )


def _check_cidfile(args: argparse.Namespace) -> None:
    """--cidfile must not exist yet (Docker's rule: another container may own it)."""
    if args.cidfile and os.path.exists(args.cidfile):
        raise InvalidSpec(f"container ID file found, make sure the other container isn't "
                          f"running or delete {args.cidfile}")


def _write_cidfile(args: argparse.Namespace, container_id: str) -> None:
    if args.cidfile:
        try:
            with open(args.cidfile, "x") as f:
                f.write(container_id)
        except OSError as exc:
            raise InvalidSpec(f"cannot write --cidfile {args.cidfile}: {exc.strerror}"
                              ) from None


def cmd_run(engine: Engine, args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    _check_cidfile(args)
    if args.detach:
        state = engine.create(spec)
        _write_cidfile(args, state.id)
        state = engine.start(state.id)
        print(state.id)
        return 0
    if args.interactive or args.tty:
        return engine.run_attached(spec)
    state = engine.create(spec)
    try:
        _write_cidfile(args, state.id)
        engine.start(state.id)
        _copy_logs(engine, state.id, follow=True)
        return engine.wait(state.id)
    finally:
        if args.rm:
            _remove_quietly(engine, state.id)


def cmd_create(engine: Engine, args: argparse.Namespace) -> int:
    args.detach = True
    spec = _spec_from_args(args)
    _check_cidfile(args)
    state = engine.create(spec)
    _write_cidfile(args, state.id)
    print(state.id)
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


def _ago(when: float | None) -> str:
    return f"{_duration(time.time() - when)} ago" if when else ""


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} seconds" if seconds >= 1 else "Less than a second"


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


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
    docs = []
    for ref in args.refs:
        try:
            docs.append(engine.inspect(ref))
        except ContainerNotFound:
            docs.append(_image_doc(engine, ref))
    print(json.dumps(docs, indent=4))
    return 0


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


# --------------------------------------------------------------------------- images

def cmd_build(engine: Engine, args: argparse.Namespace) -> int:
    def show(step: BuildStep) -> None:
        if not args.quiet:
            print(_format_step(step), flush=True)

    image_id = engine.build(
        args.path, dockerfile=args.file, tag=args.tag, buildargs=dockerargs.parse_env(args.build_arg),
        target=args.target, no_cache=args.no_cache, network=args.network, on_step=show,
    )
    if args.quiet:
        print(image_id)
    else:
        print(f"Successfully built {_short(image_id)}")
        if args.tag:
            print(f"Successfully tagged {args.tag}")
    return 0


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


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return str(n)


def cmd_pull(engine: Engine, args: argparse.Namespace) -> int:
    pull = getattr(engine, "pull", None)
    if pull is None:
        raise IsoboxError(f"pull: not supported by the {engine.name} engine")
    from pytest_isobox.images.registry.progress import ProgressPrinter

    printer = ProgressPrinter(open(os.devnull, "w") if args.quiet else sys.stderr)  # noqa: SIM115
    image_id = pull(args.image, printer)
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
    store = getattr(engine, "images_store", None)
    if store is None:
        raise IsoboxError(f"push: not supported by the {engine.name} engine")
    from pytest_isobox.images.registry.progress import ProgressPrinter

    printer = ProgressPrinter(open(os.devnull, "w") if args.quiet else sys.stderr,  # noqa: SIM115
                              verb="Push")
    chunk = parse_size(args.chunk_size) if args.chunk_size else None
    digest = store.push(args.image, printer, chunk_size=chunk)
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


def cmd_images(engine: Engine, args: argparse.Namespace) -> int:
    # As Docker, untagged images (a build's intermediate steps) show only with -a.
    infos = [i for i in engine.images() if args.all or i.tags]
    if args.quiet:
        for info in infos:
            print(_short(info.id))
        return 0
    rows = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")]
    for info in infos:
        for ref in info.tags or ["<none>:<none>"]:
            repo, _, tag = ref.rpartition(":")
            rows.append((repo, tag, _short(info.id), info.created or "", _size(info.size)))
    _table(rows)
    return 0


def cmd_rmi(engine: Engine, args: argparse.Namespace) -> int:
    for ref in args.images:
        engine.remove_image(ref, force=args.force)
        print(f"Untagged: {ref}" if ":" in ref and not ref.startswith("sha256:") else
              f"Deleted: {ref}")
    return 0


def cmd_tag(engine: Engine, args: argparse.Namespace) -> int:
    engine.tag(args.source, args.target)
    return 0


def _image_doc(engine: Engine, ref: str) -> dict:
    try:
        info = engine.image_inspect(ref)
    except ImageNotFound:
        raise ContainerNotFound(f"no such object: {ref}") from None
    doc = dict(info.config)
    doc.update({"Id": info.id, "RepoTags": info.tags, "Size": info.size})
    return doc


def cmd_image_inspect(engine: Engine, args: argparse.Namespace) -> int:
    print(json.dumps([_image_doc(engine, r) for r in args.images], indent=4))
    return 0


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


# --------------------------------------------------------------------------- networks, volumes

def cmd_network_create(engine: Engine, args: argparse.Namespace) -> int:
    # A network made from the CLI lives until `network rm`, as in Docker.
    labels = {**dockerargs.parse_labels(args.label), PERSISTENT_LABEL: "1"}
    print(engine.network_create(args.name, subnet=args.subnet, labels=labels).id)
    return 0


# Docker lists these modes as networks; an engine without such objects still offers them.
_MODE_NETWORKS = (("host", "host"), ("none", "null"))


def cmd_network_ls(engine: Engine, args: argparse.Namespace) -> int:
    rows = [("NETWORK ID", "NAME", "DRIVER", "SUBNET")]
    networks = engine.networks()
    for n in networks:
        rows.append((n.id[:12], n.name, n.driver, n.subnet or ""))
    names = {n.name for n in networks}
    rows += [("-", name, driver, "") for name, driver in _MODE_NETWORKS if name not in names]
    _table(rows)
    return 0


def _network_doc(info: NetworkInfo) -> dict:
    """Docker's network inspect document."""
    config = [{"Subnet": info.subnet, "Gateway": info.gateway}] if info.subnet else []
    return {
        "Name": info.name, "Id": info.id, "Driver": info.driver,
        "IPAM": {"Driver": "default", "Config": config},
        "Containers": {cid: {"IPv4Address": ip} for cid, ip in info.containers.items()},
        "Labels": info.labels,
    }


def cmd_network_inspect(engine: Engine, args: argparse.Namespace) -> int:
    print(json.dumps([_network_doc(engine.network_inspect(n)) for n in args.names], indent=4))
    return 0


def cmd_network_rm(engine: Engine, args: argparse.Namespace) -> int:
    for name in args.names:
        engine.network_remove(name)
        print(name)
    return 0


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


# --------------------------------------------------------------------------- argument parser

def _cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid argument {text!r}: expected a number of "
                                         "CPUs, e.g. 1.5") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid argument {text!r}: must be > 0")
    return value


def _natural(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid argument {text!r}: expected a whole number")
    return int(text)


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
    p.add_argument("--read-only", action="store_true",
                   help="mount the container's root filesystem as read only")
    p.add_argument("--security-opt", action="append", metavar="OPT",
                   help="seccomp=unconfined turns the default seccomp profile off")
    p.add_argument("--cap-add", action="append", metavar="CAP",
                   help="add a Linux capability (CAP_NET_ADMIN or NET_ADMIN, ALL)")
    p.add_argument("--cap-drop", action="append", metavar="CAP",
                   help="drop a Linux capability (ALL drops every one)")
    p.add_argument("--privileged", action="store_true",
                   help="every capability, no seccomp, no masked paths, the host's devices")
    p.add_argument("--device", action="append", metavar="HOST[:CONTAINER][:PERMS]",
                   help="give the container a host device node")
    p.add_argument("--shm-size", help="size of /dev/shm, e.g. 128m (default 64m)")
    p.add_argument("--sysctl", action="append", metavar="KEY=VALUE",
                   help="namespaced kernel parameters: net.*, kernel.shm*, kernel.msg*, "
                        "kernel.sem, fs.mqueue.*")
    p.add_argument("--add-host", action="append", metavar="NAME:IP",
                   help="an /etc/hosts line; IP host-gateway is the host as seen from the "
                        "container")
    p.add_argument("--dns", action="append", metavar="IP", help="a nameserver")
    p.add_argument("--dns-search", action="append", metavar="DOMAIN")
    p.add_argument("--dns-option", action="append", metavar="OPTION")
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


class _VerbParser(argparse.ArgumentParser):
    """A verb's parser: a usage error is one line and Docker's status 125, not the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ENGINE_ERROR, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="isobox", description="Daemonless containers, Docker's verbs.")
    top.add_argument("-v", "--version", action="version", version=f"isobox version {__version__}",
                     help="print the version and exit")
    top.add_argument("--engine", choices=["native", "docker"],
                     help="native (default, env ISOBOX_ENGINE) or docker")
    top.add_argument("--home", help="store directory of the native engine (env ISOBOX_HOME)")
    top.add_argument("-H", "--host", help="Docker daemon address for the docker engine")
    sub = top.add_subparsers(metavar="COMMAND", parser_class=_VerbParser)

    def verb(name: str, func, help: str, **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, add_help=kw.pop("add_help", True), **kw)
        p.set_defaults(func=func)
        return p

    p = verb("run", cmd_run, "run a command in a new container", add_help=False)
    _container_flags(p)
    p = verb("create", cmd_create, "create a container", add_help=False)
    _container_flags(p)
    p = verb("start", cmd_start, "start created containers")
    p.add_argument("containers", nargs="+")
    p = verb("ps", cmd_ps, "list containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p = verb("logs", cmd_logs, "show a container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", type=int)
    p.add_argument("container")
    p = verb("exec", cmd_exec, "run a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append")
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("container")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p = verb("stop", cmd_stop, "stop containers (stop signal, then SIGKILL)")
    p.add_argument("-t", "--time", type=float)
    p.add_argument("containers", nargs="+")
    p = verb("kill", cmd_kill, "send a signal to containers")
    p.add_argument("-s", "--signal", default="SIGKILL")
    p.add_argument("containers", nargs="+")
    p = verb("rm", cmd_rm, "remove containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("containers", nargs="+")
    p = verb("wait", cmd_wait, "wait for containers to exit, print exit codes")
    p.add_argument("containers", nargs="+")
    p = verb("inspect", cmd_inspect, "low-level JSON of containers or images")
    p.add_argument("refs", nargs="+")
    p = verb("port", cmd_port, "list a container's published ports")
    p.add_argument("container")
    p.add_argument("port", nargs="?")
    p = verb("cp", cmd_cp, "copy files between a container and the host")
    p.add_argument("src")
    p.add_argument("dst")
    p = verb("stats", cmd_stats, "resource usage of containers")
    p.add_argument("containers", nargs="+")

    p = verb("build", cmd_build, "build an image from a Dockerfile")
    p.add_argument("-t", "--tag")
    p.add_argument("-f", "--file")
    p.add_argument("--build-arg", action="append")
    p.add_argument("--target")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--network")
    p.add_argument("--pull", choices=["missing", "always", "never"],
                   help="pull FROM images: missing (default), always, never")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("path")
    p = verb("pull", cmd_pull, "pull an image from a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("image", help="NAME[:TAG|@DIGEST]")
    p = verb("push", cmd_push, "push an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--chunk-size", help="upload in chunks of this size (e.g. 8m), not one PUT")
    p.add_argument("image", help="NAME[:TAG]")
    p = verb("bootstrap", cmd_bootstrap,
             "make a Debian base image with debootstrap from this machine's apt mirror")
    p.add_argument("--variant", default="minbase", help="debootstrap variant (default minbase)")
    p.add_argument("--include", action="append", metavar="PKGS",
                   help="more packages, comma-separated")
    p.add_argument("-t", "--tag", help="tag it so (default NAME)")
    p.add_argument("name", help="debian:SUITE, e.g. debian:bookworm")
    p = verb("login", cmd_login, "log in to a registry (writes ~/.docker/config.json)")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?", default="docker.io")
    p.set_defaults(no_engine=True)
    p = verb("logout", cmd_logout, "log out from a registry")
    p.add_argument("server", nargs="?")
    p.set_defaults(no_engine=True)
    p = verb("images", cmd_images, "list images")
    p.add_argument("-a", "--all", action="store_true", help="show untagged images too")
    p.add_argument("-q", "--quiet", action="store_true")
    p = verb("rmi", cmd_rmi, "remove images")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")
    p = verb("tag", cmd_tag, "give an image another name")
    p.add_argument("source")
    p.add_argument("target")
    p = verb("import", cmd_import, "make an image from a root filesystem directory or tar")
    p.add_argument("source")
    p.add_argument("ref")
    p = verb("save", cmd_save, "write images to a docker-load archive")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("images", nargs="+")
    p = verb("load", cmd_load, "read images from a docker-save archive")
    p.add_argument("-i", "--input", required=True)
    verb("prune", cmd_prune, "remove what no tag or container needs")
    p = verb("df", cmd_df, "disk used by images, layers, containers and the build cache")
    p.add_argument("-v", "--verbose", action="store_true", help="each image's shared and unique size")

    system = verb("system", None, "what isobox left on this host")
    ssub = system.add_subparsers(metavar="COMMAND")
    p = ssub.add_parser("check", help="list what isobox left on this host; exit 1 if any")
    p.set_defaults(func=cmd_system_check, no_engine=True)
    p.add_argument("--save", metavar="FILE", help="write the current state to FILE")
    p.add_argument("--baseline", metavar="FILE", help="report only what is new since FILE")
    p.add_argument("--json", action="store_true", help="the items as a JSON list")
    p = ssub.add_parser("prune", help="remove what runs that died left behind")
    p.set_defaults(func=cmd_system_prune, no_engine=True)
    image = verb("image", None, "manage images")
    isub = image.add_subparsers(metavar="COMMAND")
    p = isub.add_parser("inspect")
    p.set_defaults(func=cmd_image_inspect)
    p.add_argument("images", nargs="+")
    p = isub.add_parser("ls")
    p.set_defaults(func=cmd_images)
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p = isub.add_parser("rm")
    p.set_defaults(func=cmd_rmi)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")
    isub.add_parser("prune").set_defaults(func=cmd_prune)

    network = verb("network", None, "manage networks")
    nsub = network.add_subparsers(metavar="COMMAND")
    p = nsub.add_parser("create")
    p.set_defaults(func=cmd_network_create)
    p.add_argument("--subnet")
    p.add_argument("-l", "--label", action="append")
    p.add_argument("name")
    nsub.add_parser("ls").set_defaults(func=cmd_network_ls)
    p = nsub.add_parser("inspect")
    p.set_defaults(func=cmd_network_inspect)
    p.add_argument("names", nargs="+")
    p = nsub.add_parser("rm")
    p.set_defaults(func=cmd_network_rm)
    p.add_argument("names", nargs="+")

    volume = verb("volume", None, "manage volumes")
    vsub = volume.add_subparsers(metavar="COMMAND")
    p = vsub.add_parser("create")
    p.set_defaults(func=cmd_volume_create)
    p.add_argument("name")
    vsub.add_parser("ls").set_defaults(func=cmd_volume_ls)
    p = vsub.add_parser("rm")
    p.set_defaults(func=cmd_volume_rm)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")
    return top


if __name__ == "__main__":
    sys.exit(main())
