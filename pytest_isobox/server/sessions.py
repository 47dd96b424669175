"""Cleanup without a helper container: what a client labels with testcontainers' session id
goes when that client process ends, so testcontainers needs no Ryuk
(`TESTCONTAINERS_RYUK_DISABLED=true`) and leaks nothing.

The unix socket tells us the client's pid (SO_PEERCRED); a pidfd on it wakes a thread when
the process is gone (no polling, and a reused pid can never be mistaken for the client)."""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable

SESSION_LABEL = "org.testcontainers.session-id"


class SessionReaper:
    """Session ids to the client that made them; `track` when a labelled thing is made."""

    def __init__(self, cleanup: Callable[[str], None]) -> None:
        self._cleanup = cleanup
        self._watched: dict[str, int] = {}
        self._lock = threading.Lock()

    def track(self, labels: dict[str, str], peer_pid: int | None) -> None:
        """`labels` of something a client at `peer_pid` made: watch its session's owner."""
        session = labels.get(SESSION_LABEL)
        if not session or not peer_pid:
            return
        with self._lock:
            if session in self._watched:
                return
            self._watched[session] = peer_pid
        try:
            pidfd: int | None = os.pidfd_open(peer_pid)
        except OSError:  # gone already: what it made goes now
            pidfd = None
        threading.Thread(target=self._watch, args=(session, pidfd), daemon=True,
                         name=f"session-{session[:8]}").start()

    def _watch(self, session: str, pidfd: int | None) -> None:
        if pidfd is not None:
            try:
                select.select([pidfd], [], [])
            finally:
                os.close(pidfd)
        with contextlib.suppress(Exception):
            self._cleanup(session)
        with self._lock:
            self._watched.pop(session, None)


def remove_session(ctx, session: str) -> None:
    """Every container (forced) and network labelled with `session`, as Ryuk would."""
    from pytest_isobox.engine import ContainerNotFound, IsoboxError

    for st in ctx.call(ctx.engine.containers, all=True):
        if st.labels.get(SESSION_LABEL) == session:
            with contextlib.suppress(ContainerNotFound):
                ctx.call(ctx.engine.remove, st.id, force=True)
                ctx.record_removed(st.id)
    if "networks" in getattr(ctx.engine, "capabilities", ()):
        for net in ctx.call(ctx.engine.networks):
            if net.labels.get(SESSION_LABEL) == session:
                with contextlib.suppress(IsoboxError):
                    ctx.call(ctx.engine.network_remove, net.name)
