"""Docker's `filters` query parameter: JSON, `{"label": ["a=b"]}` or the older
`{"label": {"a=b": true}}`, to {key: [values]}."""

from __future__ import annotations

import json

from pytest_isobox.server.errors import ApiError


def parse_filters(text: str | None) -> dict[str, list[str]]:
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"invalid filters {text[:80]!r}: {exc}") from None
    if not isinstance(raw, dict):
        raise ApiError(400, f"invalid filters {text[:80]!r}: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, values in raw.items():
        if isinstance(values, dict):
            out[key] = [k for k, on in values.items() if on]
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            out[key] = list(values)
        else:
            raise ApiError(400, f"invalid filters: the values of {key!r} must be a list of "
                                "strings")
    return out
