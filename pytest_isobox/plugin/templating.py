"""`"{fixture}"` references in factory arguments, found at collection and filled in at setup.

A reference is `{name}` or a path from it: `{name.attr}`, `{name.attr[key]}`. Only text that
looks like such a path counts, and never after a `$`, so shell (`${HOME}`), awk (`{print $1}`)
and JSON stay literal; `{{` and `}}` are literal braces. `{worker_id}` is the xdist worker
(`master` without xdist) and is not a fixture dependency.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

WORKER_ID = "worker_id"

_REFERENCE = re.compile(
    r"\{\{|\}\}|(?<!\$)\{(?P<path>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\]{}]+\])*)\}")
_STEP = re.compile(r"\.(?P<attr>[A-Za-z_]\w*)|\[(?P<key>[^\]]+)\]")


class TemplateError(ValueError):
    """A reference cannot be filled in; the message names the reference and the fixture."""


def references(value: Any) -> set[str]:
    """Names of the fixtures referenced anywhere in value (strings, lists, tuples, dicts)."""
    found: set[str] = set()
    _walk_strings(value, lambda text: found.update(_names(text)))
    found.discard(WORKER_ID)
    return found


def render(value: Any, values: Mapping[str, Any]) -> Any:
    """value with every reference in every string replaced, containers rebuilt, others kept.

    values maps fixture names (and `worker_id`) to their objects; a reference renders as
    `str()` of the object reached by its path.
    """
    if isinstance(value, str):
        return render_text(value, values)
    if isinstance(value, dict):
        return {render(k, values): render(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(render(v, values) for v in value)
    return value


def render_text(text: str, values: Mapping[str, Any]) -> str:
    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return str(_lookup(match.group("path"), values))

    return _REFERENCE.sub(substitute, text)


def _names(text: str) -> set[str]:
    return {re.match(r"\w+", m.group("path")).group(0)  # type: ignore[union-attr]
            for m in _REFERENCE.finditer(text) if m.group("path")}


def _lookup(path: str, values: Mapping[str, Any]) -> Any:
    head = re.match(r"\w+", path).group(0)  # type: ignore[union-attr]
    if head not in values:
        raise TemplateError(f"{{{path}}}: no fixture {head!r} was requested")
    obj = values[head]
    for step in _STEP.finditer(path, len(head)):
        try:
            if step.group("attr"):
                obj = getattr(obj, step.group("attr"))
            else:
                obj = obj[step.group("key")]
        except (AttributeError, KeyError, IndexError, TypeError) as exc:
            raise TemplateError(
                f"{{{path}}}: {type(obj).__name__} from fixture {head!r} has no "
                f"{step.group(0)!r} ({exc})") from None
    return obj


def _walk_strings(value: Any, visit: Callable[[str], None]) -> None:
    if isinstance(value, str):
        visit(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk_strings(k, visit)
            _walk_strings(v, visit)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _walk_strings(v, visit)
