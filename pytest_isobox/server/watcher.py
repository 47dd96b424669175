"""Starting a container and watching it end: each run started here gets a thread that waits
for the container's PID 1 to exit (a pidfd, no polling), collects the exit code from the
engine, removes the container when the client asked for `AutoRemove`, and wakes the
`/wait`, attach and log requests waiting on it."""

from __future__ import annotations

import contextlib
import os
import threading

from pytest_isobox.engine import ContainerState
from pytest_isobox.polling import readable
from pytest_isobox.server.context import ServerContext
from pytest_isobox.server.stdio import StdinSink


def start(ctx: ServerContext, ref: str) -> tuple[ContainerState, bool]:
    """Start `ref` if it is not running; (state, whether it was started now)."""
    with ctx.lock:
        before = ctx.engine.state(ref)
        if before.running:
            return before, False
        try:
            state = _start(ctx, before.id)
        except BaseException:  # wake the attach and /wait requests waiting for this run
            ctx.record_exit(before.id, ctx.record_start(before.id), 125)
            raise
        run = ctx.record_start(state.id)
        pidfd = _pidfd(state.pid)
    threading.Thread(target=_watch, args=(ctx, state.id, run, pidfd), daemon=True,
                     name=f"watch-{state.id[:12]}").start()
    return state, True


def _start(ctx: ServerContext, cid: str) -> ContainerState:
    """The engine's start; a container made with OpenStdin keeps a stdin the attached
    clients write to while it runs (its StdinSink), when the engine hands one out."""
    if cid not in ctx.stdin_once or not ctx.streams():
        return ctx.engine.start(cid)
    stream = ctx.engine.start_stream(cid, stdin=True)
    if stream.stdin is not None:
        ctx.stdins[cid] = StdinSink(stream.stdin, once=ctx.stdin_once[cid])
        stream.stdin = None
    stream.close()
    return ctx.engine.state(cid)


def _pidfd(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        return os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return None


def _watch(ctx: ServerContext, cid: str, run: int, pidfd: int | None) -> None:
    code = 137
    try:
        if pidfd is not None:
            readable([pidfd], None)
            os.close(pidfd)
            pidfd = None
        sink = ctx.stdins.pop(cid, None)
        if sink is not None:
            sink.close()
        with contextlib.suppress(Exception):
            code = ctx.call(ctx.engine.wait, cid)
        if cid in ctx.auto_remove:
            with contextlib.suppress(Exception):
                ctx.call(ctx.engine.remove, cid, force=True)
            ctx.record_exit(cid, run, code)
            ctx.record_removed(cid)
            return
    finally:
        ctx.record_exit(cid, run, code)
