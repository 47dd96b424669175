"""How the CLI shows things as Docker does: tables, sizes, image ids, ages and durations."""

from __future__ import annotations

import json
import time


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


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return str(n)


def compile_format(source: str | None):  # -> gotemplate.Template | None
    """-f/--format parsed before any work is done, so a bad template changes nothing."""
    if source is None:
        return None
    from pytest_isobox.gotemplate import docker_format

    return docker_format(source)[1]


def print_documents(docs: list, template) -> None:
    """inspect's output: the documents as an indented JSON list, or each through -f's template."""
    if template is None:
        print(json.dumps(docs, indent=4))
        return
    for doc in docs:
        print(template.render(doc))
