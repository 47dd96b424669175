"""Docker's `--filter key=value`: parsed once, checked against the keys a verb knows.

The same key given twice matches either value; different keys must all match (Docker's rule).
"""

from __future__ import annotations

import re

from pytest_isobox.engine import InvalidSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence


def parse_filters(given: Sequence[str] | None, known: Iterable[str]) -> dict[str, list[str]]:
    """{key: [values]} from `--filter` arguments; one line naming a bad one."""
    known = tuple(known)
    out: dict[str, list[str]] = {}
    for item in given or ():
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise InvalidSpec(f"bad format of filter {item!r} (expected name=value)")
        if key not in known:
            raise InvalidSpec(f"invalid filter {key!r} (one of: {', '.join(known)})")
        out.setdefault(key, []).append(value)
    return out


def label_matches(labels: Mapping[str, str], wanted: str) -> bool:
    """`label=key` (present) or `label=key=value`."""
    key, sep, value = wanted.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def name_matches(name: str, wanted: str) -> bool:
    """Docker matches `name=` as a regular expression searched in the name."""
    try:
        return re.search(wanted, name) is not None
    except re.error:
        return wanted in name


def reference_matches(tags: Iterable[str], wanted: str) -> bool:
    """`reference=busybox`, `reference=busybox:*`, `reference=*/app:1`: a glob on the
    repository (and the tag when one is given), as Docker's images filter."""
    import fnmatch  # (`isobox ps` and `images` without this filter load none)

    for tag in tags:
        repo, _, name = tag.rpartition(":")
        if "/" in name:  # a registry port, not a tag
            repo, name = tag, "latest"
        if ":" in wanted.rsplit("/", 1)[-1]:
            want_repo, _, want_tag = wanted.rpartition(":")
            if fnmatch.fnmatchcase(repo, want_repo) and fnmatch.fnmatchcase(name, want_tag):
                return True
        elif fnmatch.fnmatchcase(repo, wanted):
            return True
    return False


def bool_value(value: str, key: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidSpec(f"invalid filter '{key}={value}' (true or false)")
