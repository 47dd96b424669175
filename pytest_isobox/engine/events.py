"""Docker's view of engine events, shared by `GET /events` and `isobox events`: the JSON
document of one event, the `--filter` keys, and the times `--since`/`--until` accept."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pytest_isobox.engine.errors import InvalidSpec
from pytest_isobox.engine.specs import EngineEvent

FILTER_KEYS = ("container", "event", "image", "label", "network", "type", "volume", "scope",
               "daemon")
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|m|s|ms))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def docker_document(event: EngineEvent) -> dict:
    """The event as dockerd streams it (API 1.43), with the old top-level fields."""
    nano = int(event.time * 1e9)
    doc: dict = {"Type": event.type, "Action": event.action,
                 "Actor": {"ID": event.id, "Attributes": dict(event.attributes)},
                 "scope": "local", "time": nano // 1_000_000_000, "timeNano": nano}
    if event.type == "container":
        doc.update(status=event.action, id=event.id, **{"from": event.attributes.get("image",
                                                                                        "")})
    return doc


def _label(attributes: dict[str, str], want: str) -> bool:
    name, sep, value = want.partition("=")
    return name in attributes and (not sep or attributes[name] == value)


def _names(event: EngineEvent) -> set[str]:
    return {event.id, event.attributes.get("name", "")}


def _refers(event: EngineEvent, value: str) -> bool:
    return value in _names(event) or (len(value) >= 3 and event.id.startswith(value))


def matches(event: EngineEvent, filters: dict[str, list[str]]) -> bool:
    """Docker's rule: every key must match, any of a key's values will do."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "type":
            ok = event.type in values
        elif key == "event":
            ok = any(event.action == v or event.action.startswith(v + ":") for v in values)
        elif key == "container":
            ok = event.type == "container" and any(_refers(event, v) for v in values)
        elif key == "image":
            image = event.attributes.get("image") if event.type == "container" else None
            ok = any(v == image or (event.type == "image" and _refers(event, v))
                     for v in values)
        elif key == "label":
            ok = all(_label(event.attributes, v) for v in values)
        elif key in ("network", "volume"):
            ok = event.type == key and any(_refers(event, v) for v in values)
            if key == "network" and not ok:
                ok = event.type == "network" and event.attributes.get("name") in values
        elif key == "scope":
            ok = "local" in values
        elif key == "daemon":
            ok = event.type == "daemon"
        else:
            raise InvalidSpec(f"invalid filter {key!r}: expected one of "
                              f"{', '.join(FILTER_KEYS)}")
        if not ok:
            return False
    return True


def parse_filter_args(args: list[str]) -> dict[str, list[str]]:
    """`--filter key=value` flags to {key: [values]}."""
    out: dict[str, list[str]] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise InvalidSpec(f"invalid filter {arg!r}: expected key=value")
        if key not in FILTER_KEYS:
            raise InvalidSpec(f"invalid filter {arg!r}: {key!r} is not one of "
                              f"{', '.join(FILTER_KEYS)}")
        out.setdefault(key, []).append(value)
    return out


def parse_time(text: str, now: float) -> float:
    """A time as Docker's --since/--until take it: Unix seconds (`1700000000.5`), an
    RFC 3339 date (`2026-12-03T14:00:00Z`, or only a date), or a duration before `now`
    (`10m`, `1h30m`, `45s`)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if _DURATION.match(text):
        return now - sum(float(n) * _SECONDS[u] for n, u in _DURATION_PART.findall(text))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidSpec(f"invalid time {text!r}: expected Unix seconds, an RFC 3339 date "
                          "or a duration such as 10m") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
