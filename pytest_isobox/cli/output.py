"""How the CLI shows things as Docker does: tables, sizes, image ids, ages and durations."""

from __future__ import annotations

import json
import time


def _ago(when: float | None) -> str:
    return f"{_duration(time.time() - when)} ago" if when else ""


def _duration(seconds: float) -> str:
    """Docker's HumanDuration: "Less than a second", "About a minute", "3 hours", "2 weeks"."""
    if seconds < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds // 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    for unit, size, limit in (("days", 24, 24 * 7 * 2), ("weeks", 24 * 7, 24 * 30 * 2),
                              ("months", 24 * 30, 24 * 365 * 2)):
        if hours < limit:
            return f"{hours // size} {unit}"
    return f"{hours // (24 * 365)} years"


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _size(n: int, digits: int = 3) -> str:
    """Docker's human sizes: 3 significant digits (images, ps), 4 in `system df`."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.{digits}g}{unit}"
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


def _simple_columns(source: str) -> tuple[bool, list[str]] | None:
    """(table?, field names) of a format that only lists fields (`table {{.ID}}\\t{{.Names}}`,
    `{{.ID}}`: every default table and -q), else None: what else a template says is the
    template engine's (gotemplate.docker_format reads the prefix and escapes the same way)."""
    table = source.startswith("table")
    text = (source[len("table"):] if table else source).strip(" ")
    text = text.replace("\\t", "\t").replace("\\n", "\n")
    names = []
    for piece in text.split("\t"):
        name = piece[3:-2]
        if not (piece.startswith("{{.") and piece.endswith("}}") and name.isidentifier()
                and name.isascii()):
            return None
        names.append(name)
    return table, names


def check_format(source: str) -> None:
    """A verb's --format checked before any work (compile_format) unless it only lists
    fields, which cannot fail."""
    if _simple_columns(source) is None:
        compile_format(source)


def render_table(source: str, rows: list[dict], headers: dict[str, str],
                 default_table: str | None = None) -> list[str]:
    """gotemplate.render_rows's lines; a format that only lists fields whose values are
    text (the default tables, -q) is laid out here, without loading the template engine."""
    if source.strip() == "table" and default_table is not None:
        source = default_table
    simple = _simple_columns(source)
    if simple is None or not all(isinstance(row.get(name), str) for row in rows
                                 for name in simple[1]):
        from pytest_isobox.gotemplate import render_rows

        return render_rows(source, rows, headers, default_table=default_table)
    table, names = simple
    texts = ["\t".join(row[name] for name in names) for row in rows]
    if not table:
        return [line for text in texts for line in text.split("\n")]
    from pytest_isobox.tabwriter import tabwrite

    return tabwrite(["\t".join(headers.get(name, name.upper()) for name in names), *texts])
