"""Container verbs: run, create, start, ps, logs, exec, stop, kill, rm, wait, inspect, port, cp,
stats."""

from __future__ import annotations

import json
import os
import re
import sys
import time

from pytest_isobox.cli.output import (
    _ago,
    _duration,
    _size,
    check_format,
    render_table,
)
from pytest_isobox.engine import (
    ContainerNotFound,
    ContainerState,
    InvalidSpec,
    IsoboxError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: `isobox ps` loads neither argparse nor the protocol)
    import argparse

    from pytest_isobox.engine import Engine

# Docker's exit statuses for a container that did not start: the command was not found (127),
# could not be executed (126); anything else about the engine or the arguments is 125.
EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND = 126, 127


def cmd_run(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli.run_options import _spec_from_args, check_cidfile, write_cidfile

    spec = _spec_from_args(args)
    check_cidfile(args)
    # a foreground run owns its container while it runs: killed, the CLI takes it along; it
    # is kept once it has exited (Docker leaves it for `ps -a`), where the engine can keep
    # (-i/-t: run_attached keeps nothing of the container for the CLI to keep afterwards)
    if args.interactive or args.tty:
        return engine.run_attached(spec)
    # (--sig-proxy=false: this command's end is not the container's, as with Docker)
    owned = not args.detach and not args.rm and args.sig_proxy \
        and "keep" in engine.capabilities
    if owned:
        from pytest_isobox.engine.records import replace

        spec = replace(spec, persistent=False)
    state = engine.create(spec)
    started = False
    try:
        write_cidfile(args, state.id)
        code = _start(engine, state.id)
        if code is not None:
            return code
        started = True
        if args.detach:
            print(state.id)
            return 0
        streams = set(args.attach or ("stdout", "stderr"))
        with _SignalsProxied(engine, state.id, args.sig_proxy):
            _copy_logs(engine, state.id, follow=True, streams=streams)
            code = engine.wait(state.id)
        if owned:
            engine.keep(state.id)
        return code
    finally:
        if args.rm and not (args.detach and started):
            _remove_quietly(engine, state.id)


# What `docker run` passes on to its container (--sig-proxy, the default): not SIGKILL,
# SIGSTOP, SIGCHLD, SIGPIPE or SIGWINCH, which are about this process or its terminal.
_PROXIED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")


class _SignalsProxied:
    """While a foreground run lasts, the signals this command receives go to the container.

    The handler only writes the signal's number to a pipe; one thread, started before the
    run is followed, reads it and asks the engine (a handler may interrupt the main thread
    anywhere, even inside a lock that starting a thread would take). (A class, not a
    contextlib.contextmanager: `isobox ps` loads this module, and no contextlib.)"""

    def __init__(self, engine: Engine, container: str, proxy: bool) -> None:
        self._engine, self._container, self._proxy = engine, container, proxy

    def __enter__(self) -> None:
        if not self._proxy:
            return
        import signal
        import threading

        engine, container = self._engine, self._container
        read_end, write_end = os.pipe2(os.O_CLOEXEC)

        def forward(number: int, _frame: object) -> None:
            try:
                os.write(write_end, bytes([number]))
            except OSError:
                pass

        def relay() -> None:
            while number := os.read(read_end, 1):
                _kill_quietly(engine, container, signal.Signals(number[0]).name)

        thread = threading.Thread(target=relay, daemon=True, name="isobox-sig-proxy")
        thread.start()
        self._pipe, self._thread = (read_end, write_end), thread
        self._previous = {name: signal.signal(getattr(signal, name), forward)
                          for name in _PROXIED}

    def __exit__(self, *_exc: object) -> None:
        if not self._proxy:
            return
        import signal

        for name, handler in self._previous.items():
            signal.signal(getattr(signal, name), handler)
        read_end, write_end = self._pipe
        os.close(write_end)  # the relay ends once it has passed on what came before
        self._thread.join()
        os.close(read_end)


def _kill_quietly(engine: Engine, container: str, name: str) -> None:
    try:
        engine.kill(container, name)
    except IsoboxError:  # it has just ended
        pass


def _start(engine: Engine, container: str) -> int | None:
    """Start `container`; when it cannot start, say why in one line, remove it (nothing is
    left of a run that never ran) and give Docker's status: 127, 126, else 125."""
    try:
        engine.start(container)
        return None
    except IsoboxError as exc:
        code = 125
        try:
            found = (engine.inspect(container).get("State") or {}).get("ExitCode")
            code = found if found in (EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND) else 125
        except IsoboxError:
            pass
        _remove_quietly(engine, container)
        print(f"isobox: {exc}", file=sys.stderr)
        return code


def cmd_create(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli.run_options import _spec_from_args, check_cidfile, write_cidfile

    args.detach = True
    spec = _spec_from_args(args)
    check_cidfile(args)
    state = engine.create(spec)
    write_cidfile(args, state.id)
    print(state.id)
    return 0


def _remove_quietly(engine: Engine, container: str) -> None:
    try:
        engine.remove(container, force=True)
    except ContainerNotFound:
        pass


def _copy_logs(engine: Engine, container: str, *, follow: bool, tail: int | None = None,
               streams: set[str] | frozenset[str] = frozenset(("stdout", "stderr"))) -> None:
    outs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for stream, chunk in engine.logs(container, follow=follow, tail=tail,
                                     stdout="stdout" in streams, stderr="stderr" in streams):
        outs[stream].write(chunk)
        outs[stream].flush()


def cmd_start(engine: Engine, args: argparse.Namespace) -> int:
    for c in args.containers:
        engine.start(c)
        print(c)
    return 0


_PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
               "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
               "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
               "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS"}
_PS_TABLE = ("table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t"
             "{{.Ports}}\\t{{.Names}}")
_PS_FILTERS = ("status", "name", "label", "id", "ancestor", "exited", "network", "volume",
               "health", "before", "since")


def cmd_ps(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli.filters import parse_filters

    filters = parse_filters(args.filter, _PS_FILTERS)
    template = args.format
    if args.quiet:
        template = "{{.ID}}"
    elif template is None:
        template = _PS_TABLE + ("\\t{{.Size}}" if args.size else "")
    check_format(template)  # a bad template fails before any work
    last = 1 if args.latest else args.last
    every = args.all or last is not None or "status" in filters or "exited" in filters
    states = [s for s in engine.containers(all=every)]
    states.sort(key=lambda s: s.created_at or 0, reverse=True)
    # Docker's whole document only where the table asks more than a state has (a template,
    # -s, the network and volume filters): ps of the default table reads states alone
    wanted = args.format is not None or args.size or {"network", "volume"} & set(filters)
    docs = {s.id: _doc_quietly(engine, s.id, size=args.size) for s in states} if wanted else {}
    states = [s for s in states if _ps_match(engine, s, docs.get(s.id) or {}, filters, states)]
    if last is not None and last >= 0:
        states = states[:last]
    rows = [_ps_row(s, docs.get(s.id) or {}, trunc=not args.no_trunc) for s in states]
    for line in render_table(template, rows, _PS_HEADERS, default_table=_PS_TABLE):
        print(line)
    return 0


def _doc_quietly(engine: Engine, container: str, *, size: bool) -> dict | None:
    try:
        return engine.inspect(container, size=True) if size else engine.inspect(container)  # type: ignore[call-arg]
    except ContainerNotFound:  # removed meanwhile
        return None


def _ps_match(engine: Engine, s: ContainerState, doc: dict, filters: dict[str, list[str]],
              states: list[ContainerState]) -> bool:
    from pytest_isobox.cli.filters import label_matches, name_matches

    def any_of(key: str, test) -> bool:
        return key not in filters or any(test(v) for v in filters[key])

    state = doc.get("State") or {}
    health = (state.get("Health") or {}).get("Status") or s.health or "none"
    networks = set((doc.get("NetworkSettings") or {}).get("Networks") or {})
    mounts = doc.get("Mounts") or []
    created = {x.name: x.created_at or 0 for x in states} | {x.id: x.created_at or 0
                                                             for x in states}
    return (any_of("status", lambda v: _ps_state(s, doc) == v)
            and any_of("name", lambda v: name_matches(s.name, v))
            and any_of("id", lambda v: s.id.startswith(v))
            and all(label_matches(s.labels, v) for v in filters.get("label", ()))
            and any_of("exited", lambda v: s.status == "exited" and str(s.exit_code) == v)
            and any_of("ancestor", lambda v: _is_ancestor(engine, s, v))
            and any_of("network", lambda v: v in networks)
            and any_of("volume", lambda v: any(v in (m.get("Name"), m.get("Source"),
                                                     m.get("Destination")) for m in mounts))
            and any_of("health", lambda v: health == v)
            and any_of("before", lambda v: (s.created_at or 0) < created.get(v, 0))
            and any_of("since", lambda v: (s.created_at or 0) > created.get(v, float("inf"))))


def _is_ancestor(engine: Engine, s: ContainerState, wanted: str) -> bool:
    if s.image == wanted or s.image_id == wanted or s.image_id.removeprefix(
            "sha256:").startswith(wanted.removeprefix("sha256:")):
        return True
    try:
        return engine.image_inspect(wanted).id == s.image_id
    except IsoboxError:
        return False


def _ps_state(s: ContainerState, doc: dict) -> str:
    if (doc.get("State") or {}).get("Paused"):
        return "paused"
    return s.status


def _ps_row(s: ContainerState, doc: dict, *, trunc: bool) -> dict:
    argv = [doc["Path"], *(doc.get("Args") or [])] if doc.get("Path") else s.command
    command = " ".join(argv).strip()
    if trunc and len(command) > 20:
        command = command[:19] + "…"
    labels = dict(s.labels)
    mounts = [m.get("Name") or m.get("Source") or "" for m in doc.get("Mounts") or []]
    networks = list((doc.get("NetworkSettings") or {}).get("Networks") or {})
    size = ""
    if "SizeRw" in doc:
        size = f"{_size(doc['SizeRw'])} (virtual {_size(doc.get('SizeRootFs', 0))})"
    return {
        "ID": s.id[:12] if trunc else s.id,
        "Image": s.image,
        "Command": json.dumps(command, ensure_ascii=False),
        "CreatedAt": _created_at(s.created_at),
        "RunningFor": _ago(s.created_at),
        "Ports": _ports(s),
        "State": _ps_state(s, doc),
        "Status": _status(s, doc),
        "Size": size,
        "Names": s.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Label": lambda key: labels.get(key, ""),
        "Mounts": ",".join(mounts),
        "Networks": ",".join(networks),
    }


def _created_at(when: float | None) -> str:
    """Go's time.Time.String() in UTC, as `ps --format {{.CreatedAt}}` prints it."""
    if not when:
        return ""
    # (time.gmtime, not datetime: the same text, without a 1 ms import for every `ps`)
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(int(when)))


def _status(s: ContainerState, doc: dict | None = None) -> str:
    state = (doc or {}).get("State") or {}
    if s.status in ("running", "paused"):
        text = f"Up {_duration(time.time() - (s.started_at or time.time()))}"
        if s.status == "paused" or state.get("Paused"):
            return text + " (Paused)"
        health = (state.get("Health") or {}).get("Status") or s.health
        if health and health != "none":
            text += " (health: starting)" if health == "starting" else f" ({health})"
        return text
    if s.status == "exited":
        code = f"Exited ({s.exit_code})"
        return f"{code} {_ago(s.finished_at)}" if s.finished_at else code
    return s.status.capitalize()


def _ports(s: ContainerState) -> str:
    if s.status not in ("running", "paused"):  # a stopped container holds no ports (Docker shows none)
        return ""
    return ", ".join(f"{h}:{p}->{key}" for key, binds in s.ports.items() for h, p in binds)


def cmd_logs(engine: Engine, args: argparse.Namespace) -> int:
    tail = _tail_count(args.tail)
    if not (args.timestamps or args.since or args.until):
        _copy_logs(engine, args.container, follow=args.follow, tail=tail)
        return 0
    since = _time_arg(args.since, "--since") if args.since else None
    until = _time_arg(args.until, "--until") if args.until else None
    records = getattr(engine, "log_records", None)
    if records is None:
        raise IsoboxError(f"logs -t/--since/--until: not supported by the {engine.name} engine")
    outs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for stream, when, line in records(args.container, follow=args.follow, tail=tail,
                                      since=since, until=until):
        if args.timestamps:
            outs[stream].write(_rfc3339_nano(when).encode() + b" ")
        outs[stream].write(line)
        outs[stream].flush()
    return 0


def _tail_count(value: str | None) -> int | None:
    if value is None or value == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        raise InvalidSpec(f"invalid --tail {value!r}: a number of lines or all") from None
    return None if count < 0 else count


_DURATION = r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)"  # (compiled at use: not for `ps`)
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def _time_arg(value: str, flag: str) -> float:
    """Docker's --since/--until: a duration back from now (10m, 1h30m), a Unix time, or an
    RFC 3339 time (or a date, or a time without zone: UTC)."""
    from pytest_isobox.engine.documents import parse_time

    if value and re.sub(_DURATION, "", value) == "":
        return time.time() - sum(float(n) * _UNITS[u] for n, u in re.findall(_DURATION, value))
    try:
        return float(value)
    except ValueError:
        pass
    text = value if re.search(r"(Z|[+-]\d\d:?\d\d)$", value) else value + "Z"
    if re.fullmatch(r"\d{4}-\d\d-\d\d", value):
        text = value + "T00:00:00Z"
    when = parse_time(text)
    if when is None:
        raise InvalidSpec(f"invalid {flag} value {value!r}: a duration (10m), a Unix time or "
                          "an RFC 3339 time")
    return when


def _rfc3339_nano(when: float) -> str:
    """Docker's fixed nine-digit form; an engine's own text when it kept one (the daemon's
    nanoseconds)."""
    from datetime import UTC, datetime

    own = getattr(when, "rfc3339", None)
    if own:
        return own

    whole = datetime.fromtimestamp(int(when), UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{round((when % 1) * 1e9):09d}Z"


def cmd_exec(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox import dockerargs

    env = {**_env_files(args.env_file), **dockerargs.parse_env(args.env)}
    extra = {"privileged": True} if args.privileged else {}  # (an engine may not know it)
    if args.detach:
        result = _verb_of(engine, "exec_detached")(args.container, args.cmd, env=env,
                                                   user=args.user, workdir=args.workdir,
                                                   **extra)
        sys.stderr.buffer.write(result.stderr)
        return result.exit_code
    if args.interactive or args.tty:
        return engine.exec_attached(args.container, args.cmd, tty=args.tty,  # type: ignore[call-arg]
                                    stdin=args.interactive, env=env, user=args.user,
                                    workdir=args.workdir, **extra)
    result = engine.exec(args.container, args.cmd, env=env, user=args.user,  # type: ignore[call-arg]
                         workdir=args.workdir, **extra)
    sys.stdout.buffer.write(result.stdout)
    sys.stderr.buffer.write(result.stderr)
    return result.exit_code


def _env_files(paths: list[str] | None) -> dict[str, str]:
    """Docker's --env-file: KEY=VALUE lines, # comments and blank lines skipped, a bare KEY
    taken from this environment; a bad line named by file and number."""
    import os

    env: dict[str, str] = {}
    for path in paths or ():
        try:
            text = open(path, encoding="utf-8").read()  # noqa: SIM115
        except OSError as exc:
            raise InvalidSpec(f"--env-file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InvalidSpec(f"--env-file {path}: not UTF-8 text") from None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.lstrip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not key or any(c.isspace() for c in key):
                raise InvalidSpec(f"--env-file {path}:{number}: bad variable name {key!r}")
            if sep:
                env[key] = value
            elif key in os.environ:
                env[key] = os.environ[key]
    return env


def cmd_stop(engine: Engine, args: argparse.Namespace) -> int:
    return _each(engine, args.containers, lambda c: engine.stop(c, timeout=args.time))


def cmd_kill(engine: Engine, args: argparse.Namespace) -> int:
    return _each(engine, args.containers, lambda c: engine.kill(c, args.signal))


def cmd_rm(engine: Engine, args: argparse.Namespace) -> int:
    return _each(engine, args.containers, lambda c: engine.remove(c, force=args.force))


def cmd_wait(engine: Engine, args: argparse.Namespace) -> int:
    for c in args.containers:
        print(engine.wait(c))
    return 0


def cmd_inspect(engine: Engine, args: argparse.Namespace) -> int:
    """Containers, then images, networks and volumes by that name (Docker's order), or one
    --type; what is found is printed, each missing one named on stderr, exit 1 if any."""
    from pytest_isobox.cli import inspecting

    return inspecting.print_inspected(args.refs, lambda ref: inspecting.find_document(
        engine, ref, args.type, size=args.size), args.format)


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
        if dst == "-":  # as Docker: a tar of the path on stdout
            sys.stdout.buffer.write(engine.get_archive(container, path))
            sys.stdout.buffer.flush()
        else:
            copy_from(engine, container, path, dst)
    elif ":" in dst and not dst.startswith(("/", ".")):
        container, path = dst.split(":", 1)
        if src == "-":  # as Docker: a tar on stdin, unpacked into the directory path
            data = sys.stdin.buffer.read()
            _check_tar(data)
            engine.put_archive(container, path, data)
        else:
            copy_to(engine, container, src, path)
    else:
        raise IsoboxError("cp: one of SRC and DEST must be CONTAINER:PATH")
    return 0


def _check_tar(data: bytes) -> None:
    """stdin of `cp -` must be a tar archive: one line saying so, not the engine's error."""
    import io
    import tarfile

    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            archive.getmembers()
    except (tarfile.TarError, EOFError, OSError):
        raise InvalidSpec(f"cp: standard input is not a tar archive ({len(data)} bytes read)"
                          ) from None


def _verb_of(engine: Engine, name: str):  # -> the engine's method
    method = getattr(engine, name, None)
    if method is None:
        raise IsoboxError(f"{name}: not supported by the {engine.name} engine")
    return method


def _each(engine: Engine, containers: list[str], action) -> int:
    """Docker's multi-container verbs: each name printed when done, each failure one line,
    exit 1 if any failed."""
    status = 0
    for c in containers:
        try:
            action(c)
            print(c)
        except IsoboxError as exc:
            print(f"isobox: {exc}", file=sys.stderr)
            status = 1
    return status


def cmd_pause(engine: Engine, args: argparse.Namespace) -> int:
    return _each(engine, args.containers, _verb_of(engine, "pause"))


def cmd_unpause(engine: Engine, args: argparse.Namespace) -> int:
    return _each(engine, args.containers, _verb_of(engine, "unpause"))


def cmd_restart(engine: Engine, args: argparse.Namespace) -> int:
    def restart(c: str) -> None:
        engine.stop(c, timeout=args.time)
        engine.start(c)

    return _each(engine, args.containers, restart)


def cmd_rename(engine: Engine, args: argparse.Namespace) -> int:
    _verb_of(engine, "rename")(args.container, args.new_name)
    return 0


def cmd_top(engine: Engine, args: argparse.Namespace) -> int:
    doc = _verb_of(engine, "top")(args.container, " ".join(args.ps_args) or "-ef")
    from pytest_isobox.gotemplate import tabwrite

    rows = [tuple(doc.get("Titles") or []), *(tuple(p) for p in doc.get("Processes") or [])]
    if rows[0]:  # Docker's top: a tabwriter of minimum width 20
        print("\n".join(tabwrite(["\t".join(r) for r in rows], minwidth=20, padding=3)))
    return 0
