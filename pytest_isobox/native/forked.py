"""Run a function in a forked child and get its result back, pickled through a pipe.

Rootless work often has to happen in a process that changed who it is for good: one that
entered the user namespace (`UserNamespace.run`) or, in the tests, one that dropped to a
throwaway user. A fork (no exec, no interpreter start) does that cheaply; the child's result
or exception comes back pickled and is returned or raised in the caller, the exception with
the child's traceback as a note. The reply is sized, so descendants the function forked
(holding the pipe open) do not keep the caller waiting.
"""

from __future__ import annotations

import os
import pickle
import signal
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from pytest_isobox.engine import IsoboxError
from pytest_isobox.native import linux

T = TypeVar("T")


def call_in_child(func: Callable[..., T], *args: Any,
                  prepare: Callable[[], None] | None = None) -> T:
    """`func(*args)` in a forked child after `prepare()`; its value, or its exception raised.

    The child dies with the caller (PR_SET_PDEATHSIG, set after `prepare`: a change of
    credentials clears it). A child that dies without answering is an IsoboxError."""
    result_r, result_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
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
            code = 0
        finally:
            os._exit(code)
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
    where = "in the child process:\n" + "".join(traceback.format_exception(exc)).rstrip()
    try:
        exc.add_note(where)
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - fall back to the message
        plain = IsoboxError(f"{type(exc).__name__}: {exc}")
        plain.add_note(where)
        return plain
