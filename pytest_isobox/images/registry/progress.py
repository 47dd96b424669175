"""Per-layer progress of a pull or push for the CLI: bars on a terminal, plain lines otherwise.

Fed `(event, digest, done, total)` from several download threads at once.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_WIDTH = 30
_REDRAW_EVERY = 0.1
_WORDS = {"exists": "Already exists", "mounted": "Mounted", "waiting": "Waiting",
          "download": "Downloading", "upload": "Pushing", "done": "Complete"}


class ProgressPrinter:
    """Docker-like progress: one row per layer, redrawn in place on a terminal."""

    def __init__(self, out: TextIO | None = None, *, verb: str = "Pull") -> None:
        self._out = out or sys.stderr
        self._tty = self._out.isatty()
        self._rows: dict[str, str] = {}
        self._drawn = 0
        self._last = 0.0
        self._lock = threading.Lock()
        self._verb = verb

    def __call__(self, event: str, digest: str, done: int, total: int) -> None:
        short = digest.removeprefix("sha256:")[:12]
        with self._lock:
            if not self._tty:
                if event in ("exists", "mounted", "done"):
                    word = "Pushed" if event == "done" and self._verb == "Push" else _WORDS[event]
                    self._out.write(f"{short}: {word}\n")
                    self._out.flush()
                return
            before = self._rows.get(short, "")
            self._rows[short] = self._row(event, done, total)
            now = time.monotonic()
            # a row's first bar is drawn at once (a change of state, as every other event);
            # later bytes only every _REDRAW_EVERY
            moving = before.startswith((_WORDS["download"], _WORDS["upload"]))
            if event in ("download", "upload") and moving and now - self._last < _REDRAW_EVERY:
                return
            self._last = now
            self._draw()

    def _row(self, event: str, done: int, total: int) -> str:
        if event not in ("download", "upload") or not total:
            return _WORDS[event]
        filled = int(_WIDTH * min(done, total) / total)
        bar = "=" * max(filled - 1, 0) + (">" if filled else "") + " " * (_WIDTH - filled)
        return f"{_WORDS[event]} [{bar}] {_mb(done)}/{_mb(total)}"

    def _draw(self) -> None:
        if self._drawn:
            self._out.write(f"\x1b[{self._drawn}F")
        for short, text in self._rows.items():
            self._out.write(f"\x1b[2K{short}: {text}\n")
        self._drawn = len(self._rows)
        self._out.flush()

    def finish(self) -> None:
        with self._lock:
            if self._tty and self._rows:
                self._draw()


def _mb(count: int) -> str:
    return f"{count / 1e6:.1f}MB"
