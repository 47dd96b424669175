"""Container endpoints: create, list, inspect, start, stop, kill, restart, wait, logs,
attach, archive, resize, stats, rename, pause/unpause, top, update, prune and delete."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import select
import tarfile
import threading
import time

from pytest_isobox.engine import ContainerNotFound, ContainerState
from pytest_isobox.server import watcher
from pytest_isobox.server.context import ServerContext
from pytest_isobox.server.documents import (
    complete_endpoints,
    container_inspect,
    container_summary,
)
from pytest_isobox.server.errors import ApiError
from pytest_isobox.server.filters import parse_filters
from pytest_isobox.server.http import ClientGone, Hijacked, Request, frame
from pytest_isobox.server.routing import Router
from pytest_isobox.server.stdio import pump_stdin
from pytest_isobox.server.translate import spec_from_create, update_changes

router = Router()
_STREAMS = {"stdout": 1, "stderr": 2}


def _state(ctx: ServerContext, ref: str) -> ContainerState:
    try:
        return ctx.call(ctx.engine.state, ref)
    except ContainerNotFound:
        raise ApiError(404, f"No such container: {ref}") from None


@router.add("POST", "/containers/create")
def create(ctx: ServerContext, req: Request) -> None:
    req_body = req.json()
    spec = spec_from_create(req_body, req.arg("name"), default_ip=ctx.default_ip)
    auto_remove, spec.auto_remove = spec.auto_remove, False  # done by the watcher
    with ctx.lock:
        state = ctx.engine.create(spec)
        if auto_remove:
            ctx.auto_remove.add(state.id)
        if spec.networks:
            ctx.attachments[state.id] = list(spec.networks)
        if spec.stdin_open:
            ctx.stdin_once[state.id] = bool(req_body.get("StdinOnce"))
    ctx.sessions.track(spec.labels, req.peer_pid)
    req.reply_json(201, {"Id": state.id, "Warnings": []})


def _inspect(ctx: ServerContext, ref: str) -> dict:
    try:
        doc = container_inspect(ctx.call(ctx.engine.inspect, ref))
    except ContainerNotFound:
        raise ApiError(404, f"No such container: {ref}") from None
    if doc["Id"] in ctx.auto_remove:
        doc["HostConfig"]["AutoRemove"] = True
    complete_endpoints(doc, ctx.attachments.get(doc["Id"], []))
    return doc


@router.add("GET", "/containers/json")
def list_containers(ctx: ServerContext, req: Request) -> None:
    filters = parse_filters(req.arg("filters"))
    show_all = req.flag("all") or bool(filters.get("status"))
    states = ctx.call(ctx.engine.containers, all=show_all)
    entries = []
    for st in states:
        if not _matches(st, filters):
            continue
        with contextlib.suppress(ApiError):
            entries.append(container_summary(st, _listed_inspect(ctx, st)))
    if not filters and show_all:  # every container seen: forget the removed ones
        present = {st.id for st in states}
        for cid in [c for c in ctx.listed if c not in present]:
            ctx.listed.pop(cid, None)
    limit = req.int_arg("limit", -1)
    if limit is not None and limit > 0:
        entries = entries[:limit]
    req.reply_json(200, entries)


def _listed_inspect(ctx: ServerContext, st: ContainerState) -> dict:
    """The inspect document behind a list entry, made again only when the run changed:
    what the entry takes from it (command, network mode, mounts, endpoints) changes only
    with a start or a network connect (which forgets it), and an engine's inspect may cost
    a read of every member of the container's networks."""
    key = (st.status, st.started_at, st.pid)
    cached = ctx.listed.get(st.id)
    if cached is not None and cached[0] == key:
        return cached[1]
    doc = _inspect(ctx, st.id)
    ctx.listed[st.id] = (key, doc)
    return doc


def _matches(st: ContainerState, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "label":
            for want in values:
                name, sep, value = want.partition("=")
                if name not in st.labels or (sep and st.labels[name] != value):
                    return False
        elif key == "name":
            if not any(v.lstrip("/") in st.name for v in values):
                return False
        elif key == "id":
            if not any(st.id.startswith(v) for v in values):
                return False
        elif key == "status":
            if st.status not in values:
                return False
        elif key == "ancestor":
            if not any(v in (st.image, st.image_id) or st.image_id.startswith(v)
                       for v in values):
                return False
        elif key in ("exited",):
            if st.status != "exited" or str(st.exit_code) not in values:
                return False
        else:
            raise ApiError(400, f"invalid filter {key!r}")
    return True


@router.add("GET", "/containers/{id}/json")
def inspect(ctx: ServerContext, req: Request, id: str) -> None:
    req.reply_json(200, _inspect(ctx, id))


@router.add("POST", "/containers/{id}/start")
def start(ctx: ServerContext, req: Request, id: str) -> None:
    _state(ctx, id)
    _, started = watcher.start(ctx, id)
    req.reply_empty(204 if started else 304)


@router.add("POST", "/containers/{id}/stop")
def stop(ctx: ServerContext, req: Request, id: str) -> None:
    st = _state(ctx, id)
    if not st.running:
        req.reply_empty(304)
        return
    timeout = req.int_arg("t", req.int_arg("timeout"))
    ctx.call(ctx.engine.stop, st.id, None if timeout is None or timeout < 0 else float(timeout))
    _wait_exit(ctx, st.id)
    req.reply_empty(204)


@router.add("POST", "/containers/{id}/kill")
def kill(ctx: ServerContext, req: Request, id: str) -> None:
    st = _state(ctx, id)
    if not st.running:
        raise ApiError(409, f"Cannot kill container: {id}: Container {st.id} is not running")
    signal = req.arg("signal") or "SIGKILL"
    if signal.isdigit():
        import signal as signals

        try:
            signal = signals.Signals(int(signal)).name
        except ValueError:
            raise ApiError(400, f"invalid signal {signal!r}") from None
    elif not signal.startswith("SIG"):
        signal = "SIG" + signal.upper()
    ctx.call(ctx.engine.kill, st.id, signal)
    req.reply_empty(204)


@router.add("POST", "/containers/{id}/restart")
def restart(ctx: ServerContext, req: Request, id: str) -> None:
    st = _state(ctx, id)
    if st.running:
        timeout = req.int_arg("t")
        ctx.call(ctx.engine.stop, st.id, None if timeout is None else float(timeout))
        _wait_exit(ctx, st.id)
    watcher.start(ctx, st.id)
    req.reply_empty(204)


def _wait_exit(ctx: ServerContext, cid: str) -> None:
    """Until the watcher has seen the current run end (it collects the exit code)."""
    run = ctx.starts.get(cid, 0)
    if run:
        ctx.wait_for(lambda: ctx.exits.get(cid, (0, 0))[0] >= run)


@router.add("POST", "/containers/{id}/wait")
def wait(ctx: ServerContext, req: Request, id: str) -> None:
    condition = req.arg("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise ApiError(400, f"invalid condition {condition!r}: expected not-running, "
                            "next-exit or removed")
    with ctx.lock:
        st = _state(ctx, id)
        cid, runs = st.id, ctx.starts.get(st.id, 0)
    out = req.stream()  # the headers now: `docker run` starts the container once it has them
    if condition == "not-running" and not st.running:
        code = st.exit_code or 0
    else:
        target = runs if st.running else runs + 1
        ctx.wait_for(lambda: ctx.exits.get(cid, (0, 0))[0] >= target)
        code = ctx.exits[cid][1]
    if condition == "removed":
        ctx.wait_for(lambda: cid in ctx.removed)
    out.write_json({"StatusCode": code, "Error": None})
    out.close()


def _log_frames(ctx: ServerContext, cid: str, tty: bool, *, stdout: bool, stderr: bool,
                follow: bool, tail: int | None):
    for stream, data in ctx.engine.logs(cid, stdout=stdout, stderr=stderr, follow=follow,
                                        tail=tail):
        yield data if tty else frame(_STREAMS[stream], data)


def _tail(req: Request) -> int | None:
    text = req.arg("tail") or "all"
    if text == "all":
        return None
    if not text.isdigit():
        raise ApiError(400, f"invalid tail {text!r}: expected a number or all")
    return int(text)


def _when(req: Request, name: str) -> float | None:
    """since/until: Unix seconds (with a fraction), 0 or absent for none."""
    text = req.arg(name)
    if not text or text == "0":
        return None
    try:
        return float(text)
    except ValueError:
        raise ApiError(400, f"invalid value for {name}: {text!r} is not a Unix time") from None


def _stamp(when: float) -> bytes:
    """Docker's RFC 3339 time with nanoseconds, as `logs -t` prefixes each line."""
    seconds = int(when)
    nanos = round((when - seconds) * 1e9)
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + \
        b".%09dZ " % nanos


def _timed_frames(ctx: ServerContext, cid: str, tty: bool, *, stdout: bool, stderr: bool,
                  follow: bool, tail: int | None, since: float | None, until: float | None,
                  timestamps: bool):
    """Lines with their times (the engine's log_records), for since/until/timestamps."""
    records = ctx.engine.log_records(cid, stdout=stdout, stderr=stderr, follow=follow,
                                     tail=tail, since=since, until=until, lines=True)
    try:
        for stream, when, data in records:
            data = _stamp(when) + data if timestamps else data
            yield data if tty else frame(_STREAMS[stream], data)
    finally:
        records.close()


@router.add("GET", "/containers/{id}/logs")
def logs(ctx: ServerContext, req: Request, id: str) -> None:
    doc = _inspect(ctx, id)
    stdout, stderr = req.flag("stdout"), req.flag("stderr")
    if not (stdout or stderr):
        raise ApiError(400, "Bad parameters: you must choose at least one stream")
    tty = bool(doc["Config"]["Tty"])
    since, until, timestamps = _when(req, "since"), _when(req, "until"), req.flag("timestamps")
    follow = req.flag("follow") and (until is None or until > time.time())
    if (since is not None or until is not None or timestamps) \
            and hasattr(ctx.engine, "log_records"):
        frames = _timed_frames(ctx, doc["Id"], tty, stdout=stdout, stderr=stderr,
                               follow=follow, tail=_tail(req), since=since, until=until,
                               timestamps=timestamps)
    else:
        frames = _log_frames(ctx, doc["Id"], tty, stdout=stdout, stderr=stderr,
                             follow=follow, tail=_tail(req))
    out = req.stream(content_type="application/vnd.docker.raw-stream" if tty
                     else "application/vnd.docker.multiplexed-stream")
    try:
        for chunk in frames:
            out.write(chunk)
    finally:
        frames.close()
    out.close()


def _optional(ctx: ServerContext, verb: str, what: str):
    """The engine's method `verb`, or a 501 naming what this engine cannot do."""
    method = getattr(ctx.engine, verb, None)
    if method is None:
        raise ApiError(501, f"{what} is not supported by the {ctx.engine.name} engine")
    return method


@router.add("POST", "/containers/{id}/rename")
def rename(ctx: ServerContext, req: Request, id: str) -> None:
    name = (req.arg("name") or "").lstrip("/")
    if not name:
        raise ApiError(400, "the name query parameter is required")
    st = _state(ctx, id)
    with contextlib.suppress(ContainerNotFound):
        other = ctx.call(ctx.engine.state, name)
        if other.id != st.id:
            raise ApiError(409, f"Conflict. The container name \"/{name}\" is already in use "
                                f"by container \"{other.id}\". You have to remove (or rename) "
                                "that container to be able to reuse that name.")
    ctx.call(_optional(ctx, "rename", "renaming a container"), st.id, name)
    req.reply_empty(204)


@router.add("POST", "/containers/{id}/pause")
def pause(ctx: ServerContext, req: Request, id: str) -> None:
    st = _state(ctx, id)
    if not st.running:
        raise ApiError(409, f"Container {st.id} is not running")
    ctx.call(_optional(ctx, "pause", "pausing a container"), st.id)
    req.reply_empty(204)


@router.add("POST", "/containers/{id}/unpause")
def unpause(ctx: ServerContext, req: Request, id: str) -> None:
    st = _state(ctx, id)
    ctx.call(_optional(ctx, "unpause", "unpausing a container"), st.id)
    req.reply_empty(204)


@router.add("GET", "/containers/{id}/top")
def top(ctx: ServerContext, req: Request, id: str) -> None:
    st = _state(ctx, id)
    if not st.running:
        raise ApiError(409, f"Container {st.id} is not running")
    ps_args = req.arg("ps_args") or "-ef"
    doc = ctx.call(_optional(ctx, "top", "listing a container's processes"), st.id, ps_args)
    req.reply_json(200, {"Titles": list(doc.get("Titles") or []),
                         "Processes": [list(p) for p in doc.get("Processes") or []]})


@router.add("POST", "/containers/{id}/update")
def update(ctx: ServerContext, req: Request, id: str) -> None:
    """Resources and restart policy of an existing container: only through an engine that
    can change them (`update`); answered 501 otherwise, changing nothing."""
    body = req.json()
    if not isinstance(body, dict):
        raise ApiError(400, "invalid update body: expected a JSON object")
    changes = update_changes(body)
    st = _state(ctx, id)
    if changes:
        ctx.call(_optional(ctx, "update", "updating a container's resources"), st.id,
                 **changes)
    ctx.listed.pop(st.id, None)
    req.reply_json(200, {"Warnings": []})


@router.add("POST", "/containers/{id}/attach")
def attach(ctx: ServerContext, req: Request, id: str) -> None:
    """Output as it comes (from the start of the run when attached before it), as frames
    unless the container has a tty; with `stdin`, the client's bytes go to the container's
    stdin (kept open while it runs when it was made with OpenStdin)."""
    doc = _inspect(ctx, id)
    cid, tty = doc["Id"], bool(doc["Config"]["Tty"])
    stdout, stderr = req.flag("stdout"), req.flag("stderr")
    with ctx.lock:
        st = ctx.engine.state(cid)
        runs = ctx.starts.get(cid, 0)
    conn = req.hijack("application/vnd.docker.raw-stream" if tty
                      else "application/vnd.docker.multiplexed-stream")
    if req.flag("stdin") and req.flag("stream") and cid in ctx.stdin_once:
        threading.Thread(target=_attach_stdin, args=(ctx, conn, cid, runs, st.running),
                         daemon=True, name=f"stdin-{cid[:12]}").start()
    if not req.flag("stream"):
        if req.flag("logs"):
            _copy_logs(ctx, conn, cid, tty, stdout, stderr, follow=False, tail=None)
        conn.close_write()
        return
    if st.status == "created":  # the client attaches first, then starts: wait for it
        ctx.wait_for(lambda: ctx.starts.get(cid, 0) > runs or cid in ctx.removed)
        tail = None
    else:
        tail = None if req.flag("logs") else 0
    if cid not in ctx.removed:
        _copy_logs(ctx, conn, cid, tty, stdout, stderr, follow=True, tail=tail)
    conn.close_write()


def _attach_stdin(ctx: ServerContext, conn: Hijacked, cid: str, runs: int,
                  running: bool) -> None:
    """Once the run attached to has its stdin (it starts after the attach, as with `docker
    run -i`), the client's bytes into it; StdinOnce: closed at the client's EOF."""
    target = runs if running else runs + 1
    ctx.wait_for(lambda: cid in ctx.stdins or cid in ctx.removed
                 or ctx.exits.get(cid, (0, 0))[0] >= target)
    sink = ctx.stdins.get(cid)
    if sink is not None:
        pump_stdin(conn, sink, close_at_eof=sink.once)


def _copy_logs(ctx: ServerContext, conn, cid: str, tty: bool, stdout: bool, stderr: bool, *,
               follow: bool, tail: int | None) -> None:
    frames = _log_frames(ctx, cid, tty, stdout=stdout, stderr=stderr, follow=follow, tail=tail)
    try:
        for chunk in frames:
            conn.write(chunk)
    except (ContainerNotFound, ClientGone):
        pass
    finally:
        frames.close()


@router.add("POST", "/containers/{id}/resize")
def resize(ctx: ServerContext, req: Request, id: str) -> None:
    st = _state(ctx, id)
    rows, columns = req.int_arg("h", 0), req.int_arg("w", 0)
    if rows and columns and st.running and ctx.streams():
        ctx.call(ctx.engine.resize, st.id, rows, columns)
    req.reply_empty(200)


@router.add("DELETE", "/containers/{id}")
def remove(ctx: ServerContext, req: Request, id: str) -> None:
    st = _state(ctx, id)
    if st.running and not req.flag("force"):
        raise ApiError(409, f"You cannot remove a running container {st.id}. Stop the "
                            "container before attempting removal or force remove")
    ctx.call(ctx.engine.remove, st.id, force=True)
    ctx.record_removed(st.id)
    req.reply_empty(204)


@router.add("POST", "/containers/prune")
def prune(ctx: ServerContext, req: Request) -> None:
    filters = parse_filters(req.arg("filters"))
    deleted = []
    for st in ctx.call(ctx.engine.containers, all=True):
        if st.running or not _matches(st, {k: v for k, v in filters.items() if k == "label"}):
            continue
        with contextlib.suppress(ContainerNotFound):
            ctx.call(ctx.engine.remove, st.id, force=True)
            ctx.record_removed(st.id)
            deleted.append(st.id)
    req.reply_json(200, {"ContainersDeleted": deleted, "SpaceReclaimed": 0})


def _system_cpu_ns() -> int:
    """The host's CPU time (all CPUs, all states) from /proc/stat, as dockerd reports it."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    return sum(int(v) for v in fields) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _memory_limit() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _stats_doc(ctx: ServerContext, st: ContainerState, previous: dict | None) -> dict:
    s = ctx.call(ctx.engine.stats, st.id)
    cpu = {"cpu_usage": {"total_usage": s.cpu_time_ns, "usage_in_kernelmode": 0,
                         "usage_in_usermode": 0},
           "system_cpu_usage": _system_cpu_ns(), "online_cpus": os.cpu_count() or 1,
           "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {"read": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "preread": (previous or {}).get("read", "0001-01-01T00:00:00Z"),
            "id": st.id, "name": "/" + st.name, "pids_stats": {"current": s.pids},
            "memory_stats": {"usage": s.memory_current, "max_usage": s.memory_peak,
                             "limit": _memory_limit(), "stats": {}},
            "cpu_stats": cpu,
            "precpu_stats": (previous or {}).get("cpu_stats") or {
                "cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0,
                "online_cpus": cpu["online_cpus"]},
            "blkio_stats": {}, "num_procs": 0, "storage_stats": {}, "networks": {}}


@router.add("GET", "/containers/{id}/stats")
def stats(ctx: ServerContext, req: Request, id: str) -> None:
    """One sample (stream=false or one-shot), or one a second while the container runs,
    each with the one before as `precpu_stats` (the CLI's CPU % is their difference)."""
    st = _state(ctx, id)
    if not req.flag("stream", True) or req.flag("one-shot"):
        req.reply_json(200, _stats_doc(ctx, st, None))
        return
    out = req.stream()
    previous = None
    run = ctx.starts.get(st.id, 0)

    def ended() -> bool:
        return st.id in ctx.removed or bool(run and ctx.exits.get(st.id, (0, 0))[0] >= run)

    while True:
        try:
            previous = _stats_doc(ctx, st, previous)
        except ContainerNotFound:
            break
        out.write_json(previous)
        ctx.wait_for(ended, timeout=1.0)  # a second, or less when it stops
        if ended() or select.select([req.connection], [], [], 0)[0]:
            break  # stopped, removed, or the client went away
        try:
            if not ctx.call(ctx.engine.state, st.id).running:
                break
        except ContainerNotFound:
            break
    out.close()


def _path_stat(archive: bytes, path: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        first = tar.next()
    if first is None:
        raise ApiError(404, f"Could not find the file {path} in container")
    mode = first.mode | (0x80000000 if first.isdir() else 0) | (0x8000000 if first.issym() else 0)
    stat = {"name": first.name.rstrip("/").rsplit("/", 1)[-1], "size": first.size,
            "mode": mode, "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first.mtime)),
            "linkTarget": first.linkname}
    return base64.b64encode(json.dumps(stat).encode()).decode()


def _archive(ctx: ServerContext, req: Request, id: str) -> tuple[bytes, str]:
    path = req.arg("path")
    if not path:
        raise ApiError(400, "the path query parameter is required")
    st = _state(ctx, id)
    try:
        data = ctx.call(ctx.engine.get_archive, st.id, path)
    except Exception as exc:
        if "no such" in str(exc).lower() or "not found" in str(exc).lower() \
                or "missing" in str(exc).lower():
            raise ApiError(404, f"Could not find the file {path} in container {id}") from None
        raise
    return data, _path_stat(data, path)


@router.add("GET", "/containers/{id}/archive")
def get_archive(ctx: ServerContext, req: Request, id: str) -> None:
    data, stat = _archive(ctx, req, id)
    req.reply_bytes(200, data, {"Content-Type": "application/x-tar",
                                "X-Docker-Container-Path-Stat": stat})


@router.add("HEAD", "/containers/{id}/archive")
def head_archive(ctx: ServerContext, req: Request, id: str) -> None:
    _, stat = _archive(ctx, req, id)
    req.reply_empty(200, {"X-Docker-Container-Path-Stat": stat})


@router.add("PUT", "/containers/{id}/archive")
def put_archive(ctx: ServerContext, req: Request, id: str) -> None:
    path = req.arg("path")
    if not path:
        raise ApiError(400, "the path query parameter is required")
    st = _state(ctx, id)
    data = b"".join(req.body_chunks())
    ctx.call(ctx.engine.put_archive, st.id, path, data)
    req.reply_empty(200)
