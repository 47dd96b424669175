"""Every compose file validated against the compose-spec JSON schema (vendored in spec/), so
a wrong type or an unknown key is one line naming the file and the key path, never a traceback
from deeper in."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from pytest_isobox.compose import ComposeError

SCHEMA_PATH = Path(__file__).with_name("spec") / "compose-spec.json"


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    # the file says draft-07 without the trailing '#' jsonschema looks its metaschema up by
    return jsonschema.Draft7Validator(json.loads(SCHEMA_PATH.read_text()))


def key_path(parts: Any) -> str:
    """`services.web.ports[0]` from a jsonschema path."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _best(error: Any) -> Any:
    """The most specific error: inside a oneOf/anyOf, the branch that got deepest."""
    while error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.context)))
    return error


def validate(document: Any, source: str) -> None:
    """Raise ComposeError `source: services.web.ports[0]: <what is wrong>` for the first error."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.path)))
    if not errors:
        return
    error = _best(errors[0])
    where = key_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        patterns = list(error.schema.get("patternProperties", {}))
        extra = sorted(k for k in error.instance
                       if k not in allowed and not any(re.search(p, k) for p in patterns))
        if extra:
            key = f"{where}.{extra[0]}" if where else extra[0]
            raise ComposeError(f"{source}: {key}: unknown key (not in the compose-spec)")
    raise ComposeError(f"{source}: {where or '(top level)'}: {error.message}")
