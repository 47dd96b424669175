"""The fork-in-child pattern, written once: `fork_child` (a child that runs a function and
always exits, never returning into the caller's code) and `call_in_child` (the same, with the
function's result or exception back in the caller, pickled through a pipe).

Rootless work often has to happen in a process that changed who it is for good: one that
entered the user namespace (`UserNamespace.run`) or, in the tests, one that dropped to a
throwaway user. A fork (no exec, no interpreter start) does that cheaply; the child's result
or exception comes back pickled and is returned or raised in the caller, the exception with
the child's traceback as a note. The reply is sized, so descendants the function forked
(holding the pipe open) do not keep the caller waiting.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any, TypeVar

from pytest_isobox.engine import IsoboxError
from pytest_isobox.native import linux

T = TypeVar("T")


def fork_child(body: Callable[[], int | None], *, name: str, keep_fds: set[int] | None = None,
               die_with_parent: bool = True, failure_code: int = 1) -> int:
    """Fork; the child, named `isobox-<name>` (its comm, what `isobox system check` looks
    for), runs `body()` and exits with what it returns (None: 0), or with `failure_code`
    after printing the traceback if it raises. Returns the child's pid.

    `keep_fds`: every other fd above 2 is closed first (the caller's pipes must not live on
    in a long-lived child). `die_with_parent`: SIGKILL when the caller's thread dies."""
    pid = os.fork()
    if pid != 0:
        return pid
    code = failure_code
    try:
        linux.set_process_name(linux.PROCESS_NAME_PREFIX + name)
        if keep_fds is not None:
            close_fds_except(keep_fds)
        if die_with_parent:
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        result = body()
        code = 0 if result is None else int(result)
    except BaseException:  # noqa: BLE001 - the child reports any failure, then exits
        with contextlib.suppress(Exception):
            import traceback  # (only a failing child pays for it)

            traceback.print_exc()
    finally:
        os._exit(code)


def close_fds_except(keep: set[int]) -> None:
    """Close every fd above 2 but `keep`: the engine's pipes must not live on in us."""
    low = 3
    for fd in sorted(f for f in keep if f >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def call_in_child(func: Callable[..., T], *args: Any,
                  prepare: Callable[[], None] | None = None) -> T:
    """`func(*args)` in a forked child after `prepare()`; its value, or its exception raised.

    The child dies with the caller (PR_SET_PDEATHSIG, set after `prepare`: a change of
    credentials clears it). A child that dies without answering is an IsoboxError."""
    import pickle  # (here, not at the top: forking a monitor or a reaper needs none)

    result_r, result_w = os.pipe2(os.O_CLOEXEC)

    def answer() -> None:
        os.close(result_r)
        try:
            if prepare is not None:
                prepare()
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            payload = pickle.dumps((True, func(*args)))
        except BaseException as exc:  # noqa: BLE001 - sent back to the caller
            payload = pickle.dumps((False, _picklable(exc)))
        with open(result_w, "wb", closefd=False) as out:
            out.write(len(payload).to_bytes(8, "big") + payload)

    pid = fork_child(answer, name="call", die_with_parent=False)  # set after prepare(), which may clear it
    os.close(result_w)
    with open(result_r, "rb") as source:
        size = int.from_bytes(source.read(8) or b"\0", "big")
        data = source.read(size) if size else b""
    os.waitpid(pid, 0)
    if not data:
        raise IsoboxError(f"{getattr(func, '__name__', func)} died in its child process")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value


def _picklable(exc: BaseException) -> BaseException:
    """`exc` with the child's traceback as a note, or an IsoboxError with its message if it
    does not pickle."""
    import pickle
    import traceback

    where = "in the child process:\n" + "".join(traceback.format_exception(exc)).rstrip()
    try:
        exc.add_note(where)
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - fall back to the message
        plain = IsoboxError(f"{type(exc).__name__}: {exc}")
        plain.add_note(where)
        return plain
