"""Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
`${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` for a literal `$`.

Values come from the process environment first, then the `.env` file (or the env files given),
as `docker compose` does. Applied to every string of the loaded document, keys excepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_isobox.compose import ComposeError
from pytest_isobox.compose.tags import Tagged

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PATTERN = re.compile(
    rf"\$(?:(?P<escaped>\$)|(?P<bare>{_NAME})|\{{(?P<braced>{_NAME})"
    r"(?:(?P<op>:?[-?+])(?P<arg>(?:[^{}]|\{[^{}]*\})*))?\}|(?P<invalid>\{[^}]*\}?))"
)


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines of an env file (comments, blank lines and `export ` allowed; single or
    double quotes around a value removed). A line without `=` is an error naming file and line."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(_NAME, key):
            raise ComposeError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def substitute(text: str, env: Mapping[str, str], where: str = "") -> str:
    """One string with its variables replaced; `where` (file: key path) names it in errors."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["bare"]:
            return env.get(match["bare"], "")
        if match["invalid"] is not None:
            raise ComposeError(f"{where}: invalid interpolation format {match[0]!r}")
        name, op, arg = match["braced"], match["op"], match["arg"] or ""
        value = env.get(name)
        unset_or_empty = value is None or (op is not None and op.startswith(":") and not value)
        if op is None:
            return value or ""
        kind = op[-1]
        if kind == "-":
            return substitute(arg, env, where) if unset_or_empty else value  # type: ignore[return-value]
        if kind == "?":
            if unset_or_empty:
                message = substitute(arg, env, where) or f"variable {name} is not set"
                raise ComposeError(f"{where}: required variable {name}: {message}")
            return value  # type: ignore[return-value]
        return "" if unset_or_empty else substitute(arg, env, where)

    return _PATTERN.sub(replace, text)


def interpolate(document: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Every string value of a loaded document interpolated (mapping keys left as they are)."""
    if isinstance(document, Tagged):  # !reset / !override: their content interpolated
        return type(document)(interpolate(document.value, env, where))
    if isinstance(document, str):
        return substitute(document, env, where)
    if isinstance(document, Mapping):
        return {key: interpolate(value, env, f"{where}.{key}" if where else str(key))
                for key, value in document.items()}
    if isinstance(document, list):
        return [interpolate(value, env, f"{where}[{index}]")
                for index, value in enumerate(document)]
    return document
