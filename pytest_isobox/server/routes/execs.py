"""Exec endpoints: create, start (hijacked: stdin in, output out as it comes, as frames
unless tty; or detached), resize and inspect."""

from __future__ import annotations

import contextlib
import secrets
import threading

from pytest_isobox import dockerargs
from pytest_isobox.engine import ContainerNotFound, ProcessStream
from pytest_isobox.server.context import ExecInstance, ServerContext
from pytest_isobox.server.errors import ApiError, api_error
from pytest_isobox.server.http import ClientGone, Hijacked, Request, frame
from pytest_isobox.server.routing import Router
from pytest_isobox.server.stdio import StdinSink, pump_output, start_stdin_pump
from pytest_isobox.server.translate import _strings

router = Router()


@router.add("POST", "/containers/{id}/exec")
def create(ctx: ServerContext, req: Request, id: str) -> None:
    body = req.json()
    if not isinstance(body, dict):
        raise ApiError(400, "invalid exec config: expected a JSON object")
    cmd = _strings(body.get("Cmd"), "Cmd")
    if not cmd:
        raise ApiError(400, "No exec command specified")
    try:
        st = ctx.call(ctx.engine.state, id)
    except ContainerNotFound:
        raise ApiError(404, f"No such container: {id}") from None
    if not st.running:
        raise ApiError(409, f"Container {st.id} is not running")
    instance = ExecInstance(
        id=secrets.token_hex(32), container=st.id, cmd=cmd,
        env=dockerargs.parse_env(_strings(body.get("Env"), "Env") or [], environ={}),
        user=body.get("User") or None, workdir=body.get("WorkingDir") or None,
        tty=bool(body.get("Tty")), stdin=bool(body.get("AttachStdin")),
        stdout=bool(body.get("AttachStdout", True)), stderr=bool(body.get("AttachStderr", True)))
    ctx.execs[instance.id] = instance
    req.reply_json(201, {"Id": instance.id})


def _instance(ctx: ServerContext, id: str) -> ExecInstance:
    instance = ctx.execs.get(id)
    if instance is None:
        raise ApiError(404, f"No such exec instance: {id}")
    return instance


def _run(ctx: ServerContext, instance: ExecInstance):
    instance.running = True
    try:
        result = ctx.call(ctx.engine.exec, instance.container, instance.cmd, env=instance.env,
                          user=instance.user, workdir=instance.workdir)
    except Exception:
        instance.exit_code = 126
        raise
    finally:
        instance.running = False
    instance.exit_code = result.exit_code
    return result


@router.add("POST", "/exec/{id}/start")
def start(ctx: ServerContext, req: Request, id: str) -> None:
    instance = _instance(ctx, id)
    body = req.json(required=False)
    if instance.running or instance.exit_code is not None:
        raise ApiError(409, f"exec instance {id} has already been started")
    if body.get("Detach"):
        threading.Thread(target=_run, args=(ctx, instance), daemon=True).start()
        req.reply_empty(200)
        return
    tty = bool(body.get("Tty", instance.tty))
    if ctx.streams():
        # the process starts once the client has the 101: output sent along with the
        # headers would be read into docker-py's header buffer and lost to its raw reads
        conn = req.hijack("application/vnd.docker.raw-stream" if tty
                          else "application/vnd.docker.multiplexed-stream")
        try:
            stream = _open_stream(ctx, instance, tty)
        except Exception as exc:  # noqa: BLE001 - the stream has begun: the error goes down it
            message = f"{api_error(exc).message}\n".encode()
            with contextlib.suppress(ClientGone):
                conn.write(message if tty else frame(2, message))
            conn.close_write()
            return
        _relay(instance, stream, conn, tty)
        return
    conn = req.hijack("application/vnd.docker.raw-stream" if tty
                      else "application/vnd.docker.multiplexed-stream")
    try:
        result = _run(ctx, instance)
        out = (result.stdout if instance.stdout else b"") + \
              (result.stderr if instance.stderr else b"")
        if tty:
            conn.write(out)
        else:
            if instance.stdout and result.stdout:
                conn.write(frame(1, result.stdout))
            if instance.stderr and result.stderr:
                conn.write(frame(2, result.stderr))
    except ClientGone:
        return
    except Exception as exc:  # noqa: BLE001 - the stream has begun: the error goes down it
        conn.write(frame(2, f"{exc}\n".encode()) if not tty else f"{exc}\n".encode())
    conn.close_write()


def _open_stream(ctx: ServerContext, instance: ExecInstance, tty: bool) -> ProcessStream:
    instance.running = True
    try:
        stream = ctx.call(ctx.engine.exec_stream, instance.container, instance.cmd, tty=tty,
                          stdin=instance.stdin, env=instance.env, user=instance.user,
                          workdir=instance.workdir)
    except BaseException:
        instance.running, instance.exit_code = False, 126
        raise
    instance.pid, instance.stream = stream.pid, stream
    if instance.size is not None and stream.resize is not None:  # asked before it started
        stream.resize(*instance.size)
    return stream


def _relay(instance: ExecInstance, stream: ProcessStream, conn: Hijacked, tty: bool) -> None:
    """stdin in (its own thread), output out as it comes, then the exit code recorded."""
    try:
        if stream.stdin is not None:
            sink = StdinSink(stream.stdin, once=True)
            stream.stdin = None  # the sink owns it now
            start_stdin_pump(conn, sink, close_at_eof=True)
        pump_output(conn, stream, tty=tty, stdout=instance.stdout, stderr=instance.stderr)
        instance.exit_code = stream.wait()
    finally:
        instance.running, instance.stream = False, None
        stream.close()
    conn.close_write()


@router.add("POST", "/exec/{id}/resize")
def resize(ctx: ServerContext, req: Request, id: str) -> None:
    instance = _instance(ctx, id)
    rows, columns = req.int_arg("h", 0), req.int_arg("w", 0)
    if rows and columns:
        instance.size = (rows, columns)
        stream = instance.stream
        if stream is not None and stream.resize is not None:
            stream.resize(rows, columns)
    req.reply_empty(201)


@router.add("GET", "/exec/{id}/json")
def inspect(ctx: ServerContext, req: Request, id: str) -> None:
    i = _instance(ctx, id)
    req.reply_json(200, {
        "ID": i.id, "Running": i.running, "ExitCode": i.exit_code, "OpenStdin": i.stdin,
        "OpenStderr": i.stderr, "OpenStdout": i.stdout, "CanRemove": False,
        "ContainerID": i.container, "DetachKeys": "", "Pid": i.pid,
        "ProcessConfig": {"tty": i.tty, "entrypoint": i.cmd[0], "arguments": i.cmd[1:],
                          "privileged": False, "user": i.user or ""},
    })
