"""Docker's --security-opt values, read as dockerd reads them (daemon parseSecurityOpt).

Accepted: seccomp=unconfined, seccomp=builtin (the default profile), seccomp=PROFILE where
PROFILE is a Docker profile as JSON text (what the docker CLI sends) or the path of a JSON file
(what a user types: the docker CLI reads it), no-new-privileges[=BOOL], apparmor=NAME and
label=... (this runtime applies neither, as dockerd on a host without AppArmor or SELinux does
not), "disable" (a label option). "key:value" is read as "key=value", as dockerd still does.
Anything else is refused with dockerd's message naming the value.
"""

from __future__ import annotations

import json
from pathlib import Path

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.engine.records import FrozenRecord, record


@record
class SecurityOptions(FrozenRecord):
    """seccomp: "default", "unconfined", or a profile's JSON text (from `profile_source`: a
    file's path or "inline JSON")."""

    seccomp: str = "default"
    no_new_privs: bool = False
    profile_source: str = ""


_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


def parse(security_opt: list[str] | tuple[str, ...]) -> SecurityOptions:
    """The options a container asked for; InvalidSpec names the first one that is wrong."""
    seccomp, no_new_privs, source = "default", False, ""
    for opt in security_opt:
        if opt == "no-new-privileges":
            no_new_privs = True
            continue
        if opt == "disable":
            continue
        sep = "=" if "=" in opt else ":"
        key, found, value = opt.partition(sep)
        if not found:
            raise InvalidSpec(f"invalid --security-opt 1: {json.dumps(opt)}")
        if key in ("label", "apparmor"):
            continue
        if key == "seccomp":
            seccomp = _seccomp_value(value)
            source = "inline JSON" if seccomp == value else value  # else: the file's path
        elif key == "no-new-privileges" and value in _TRUE | _FALSE:
            no_new_privs = value in _TRUE
        else:
            raise InvalidSpec(f"invalid --security-opt 2: {json.dumps(opt)}")
    return SecurityOptions(seccomp, no_new_privs, source)


def _seccomp_value(value: str) -> str:
    if value == "unconfined":
        return value
    if value in ("builtin", ""):
        return "default"
    if value.lstrip().startswith("{"):
        return value
    path = Path(value)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidSpec(f"opening seccomp profile ({value}) failed: {exc.strerror}") from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise InvalidSpec(f"decoding seccomp profile {value} failed: {exc}") from None
    return text
