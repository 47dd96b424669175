"""The daemon's `GET /events` as the seam's events (capability "events"): JSON lines read
on their own thread, so a quiet stream still lets the caller look up every second."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from pytest_isobox.engine import EngineEvent

IDLE_SECONDS = 1.0
_END = object()


def _event(doc: dict) -> EngineEvent:
    actor = doc.get("Actor") or {}
    nano = doc.get("timeNano")
    return EngineEvent(str(doc.get("Type") or ""), str(doc.get("Action") or doc.get("status")),
                       str(actor.get("ID") or doc.get("id") or ""),
                       {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()},
                       nano / 1e9 if nano else float(doc.get("time") or 0))


def daemon_events(client: Any, *, since: float | None, until: float | None,
                  follow: bool) -> Iterator[EngineEvent | None]:
    """Events from the daemon between `since` and `until` (not following: up to now)."""
    if not follow and until is None:
        until = time.time()
    query = {}
    if since is not None:
        query["since"] = f"{since:.9f}"
    if until is not None:
        query["until"] = f"{until:.9f}"
    conn, resp = client.open_stream("GET", "/events", query)
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        with contextlib.suppress(Exception):
            while line := resp.readline():
                if line.strip():
                    lines.put(line)
        lines.put(_END)

    threading.Thread(target=read, daemon=True, name="isobox-docker-events").start()
    try:
        while True:
            try:
                line = lines.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                yield None
                continue
            if line is _END:
                return
            with contextlib.suppress(ValueError):
                yield _event(json.loads(line))
    finally:
        conn.close()
