"""A Docker seccomp profile resolved for one container: which rules apply, per architecture,
by system call number.

Follows what dockerd (profiles/seccomp setupSeccomp) and runc then do with a profile: the
native architecture and its sub-architectures from "archMap" (or those of "architectures");
an entry kept only when its "includes" hold and its "excludes" do not (capabilities in the
container's set, Docker's architecture name of this machine, a minimum kernel); names unknown
on an architecture skipped; a rule whose action is the default action dropped; the arguments
of one entry all required, except that several conditions on one argument each make a rule of
their own (runc's reading). Calls numbered above the highest the profile names get ENOSYS,
as runc arranges, so that C libraries fall back from system calls newer than the profile.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field

from pytest_isobox.engine import EngineUnavailable, InvalidSpec
from pytest_isobox.native.seccomp import syscalls

# SECCOMP_RET_* values
RET_KILL_THREAD = 0x00000000
RET_KILL_PROCESS = 0x80000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

_ACTIONS = {"SCMP_ACT_KILL": RET_KILL_THREAD, "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS, "SCMP_ACT_TRAP": RET_TRAP,
            "SCMP_ACT_ERRNO": RET_ERRNO, "SCMP_ACT_TRACE": RET_TRACE, "SCMP_ACT_LOG": RET_LOG,
            "SCMP_ACT_ALLOW": RET_ALLOW}
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")

# machine -> (our table name, Docker's architecture name for includes/excludes)
_NATIVE = {"x86_64": ("x86_64", "amd64"), "aarch64": ("aarch64", "arm64")}
_SCMP_ARCHES = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X32": "x32",
                "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_ARM": "arm"}


@dataclass(frozen=True)
class Condition:
    """Argument `index` compared with `value` (MASKED_EQ: arg & value == value_two)."""

    index: int
    op: str  # one of OPERATORS, without the SCMP_CMP_ prefix
    value: int
    value_two: int = 0


@dataclass(frozen=True)
class Rule:
    """`action` when every condition holds (no conditions: always)."""

    conditions: tuple[Condition, ...]
    action: int


@dataclass
class ArchRules:
    arch: str  # a syscalls table name: x86_64, x86, x32, aarch64, arm
    rules: dict[int, list[Rule]] = field(default_factory=dict)
    highest: int | None = None  # above it: ENOSYS (None: no such stub)


@dataclass
class Resolved:
    default_action: int
    arches: list[ArchRules]  # the native one first


def native_arch() -> str:
    """This machine's architecture as a table name; EngineUnavailable if we have no table."""
    machine = os.uname().machine  # (platform's: no import of it, with its regexes)
    if machine not in _NATIVE:
        raise EngineUnavailable(f"no seccomp syscall table for architecture {machine}: "
                                "run with --security-opt seccomp=unconfined")
    return _NATIVE[machine][0]


def resolve(profile_json: str | dict, capabilities: tuple[str, ...] | list[str],
            arch: str | None = None, kernel: tuple[int, int] | None = None) -> Resolved | None:
    """The rules `profile` gives a container with these capabilities; None: no filter at all.

    `arch` and `kernel` default to this machine's (they are parameters for tests).
    """
    try:
        profile = json.loads(profile_json) if isinstance(profile_json, str) else profile_json
        if not isinstance(profile, dict):
            raise InvalidSpec("seccomp profile: expected a JSON object")
        if not profile.get("defaultAction") and not profile.get("syscalls"):
            return None
        if not profile.get("defaultAction"):
            raise InvalidSpec("seccomp profile: no defaultAction")
        return _resolve(profile, capabilities, arch or native_arch(), kernel)
    except InvalidSpec:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # the JSON's shape
        raise InvalidSpec(f"seccomp profile: malformed ({type(exc).__name__}: {exc})") from None


def _resolve(profile: dict, capabilities: tuple[str, ...] | list[str], arch: str,
             kernel: tuple[int, int] | None) -> Resolved:
    default = _action(profile.get("defaultAction") or "", profile.get("defaultErrnoRet"))
    arches = [ArchRules(a) for a in _arches(profile, arch)]
    for entry in applicable_entries(profile, capabilities, arch, kernel):
        action = _action(entry.get("action") or "", entry.get("errnoRet"))
        rules = [Rule(conds, action) for conds in _condition_sets(entry)]
        for name in _names(entry):
            for target in arches:
                number = syscalls.table(target.arch).get(name)
                if number is None:
                    continue
                target.highest = max(number, target.highest or 0)
                if action != default:
                    target.rules.setdefault(number, []).extend(rules)
    if default in (RET_ALLOW, RET_LOG, RET_ERRNO | errno.ENOSYS):
        for target in arches:
            target.highest = None
    return Resolved(default, arches)


def applicable_entries(profile: dict, capabilities: tuple[str, ...] | list[str], arch: str,
                       kernel: tuple[int, int] | None = None) -> list[dict]:
    """The profile's "syscalls" entries whose includes and excludes let them apply here."""
    docker_arch = {table: name for table, name in _NATIVE.values()}.get(arch, arch)
    caps = {c if c.startswith("CAP_") else f"CAP_{c}" for c in capabilities}
    kernel = kernel or _running_kernel()
    return [e for e in profile.get("syscalls") or () if _applies(e, docker_arch, caps, kernel)]


def _arches(profile: dict, native: str) -> list[str]:
    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidSpec("seccomp profile: 'architectures' and 'archMap' were both specified, "
                          "use either")
    listed = list(profile.get("architectures") or ())
    for entry in profile.get("archMap") or ():
        if _SCMP_ARCHES.get(entry.get("architecture")) == native:
            listed = [entry["architecture"], *(entry.get("subArchitectures") or ())]
            break
    arches = [native]
    for name in listed:  # architectures we have no table for get the bad-architecture kill
        table = _SCMP_ARCHES.get(name)
        if table and table not in arches:
            arches.append(table)
    return arches


def _applies(entry: dict, docker_arch: str, caps: set[str], kernel: tuple[int, int]) -> bool:
    excludes, includes = entry.get("excludes") or {}, entry.get("includes") or {}
    if docker_arch in (excludes.get("arches") or ()):
        return False
    if any(c in caps for c in excludes.get("caps") or ()):
        return False
    if excludes.get("minKernel") and kernel >= _version(excludes["minKernel"]):
        return False
    if includes.get("arches") and docker_arch not in includes["arches"]:
        return False
    if not all(c in caps for c in includes.get("caps") or ()):
        return False
    return not (includes.get("minKernel") and kernel < _version(includes["minKernel"]))


def _names(entry: dict) -> list[str]:
    if entry.get("name") and entry.get("names"):
        raise InvalidSpec("seccomp profile: 'name' and 'names' were both specified in one "
                          f"entry ({entry['name']}), use either")
    names = [entry["name"]] if entry.get("name") else entry.get("names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidSpec(f"seccomp profile: 'names' must be a list of strings, not {names!r}")
    return names


def _action(name: str, errno_ret: int | None) -> int:
    if name not in _ACTIONS:
        raise InvalidSpec(f"seccomp profile: unsupported action {name!r}")
    value = _ACTIONS[name]
    if value in (RET_ERRNO, RET_TRACE):
        value |= (errno.EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF
    return value


def _condition_sets(entry: dict) -> list[tuple[Condition, ...]]:
    conditions = []
    for arg in entry.get("args") or ():
        op = arg.get("op")
        if op not in OPERATORS:
            raise InvalidSpec(f"seccomp profile: unknown operator {op!r} for {_names(entry)}")
        index = int(arg.get("index", 0))
        if not 0 <= index <= 5:
            raise InvalidSpec(f"seccomp profile: argument index {index} out of range (0-5)")
        conditions.append(Condition(index, op.removeprefix("SCMP_CMP_"),
                                    int(arg.get("value", 0)), int(arg.get("valueTwo", 0))))
    indexes = [c.index for c in conditions]
    if len(set(indexes)) < len(indexes):  # runc: each condition becomes a rule of its own
        return [(c,) for c in conditions]
    return [tuple(conditions)]


def _version(text: str) -> tuple[int, int]:
    try:
        major, minor = (text.split(".") + ["0"])[:2]
        return int(major), int(minor)
    except ValueError:
        raise InvalidSpec(f"seccomp profile: invalid kernel version {text!r}") from None


def _running_kernel() -> tuple[int, int]:
    release = os.uname().release
    major, _, rest = release.partition(".")
    minor = "".join(ch for ch in rest.split(".")[0] if ch.isdigit()) or "0"
    return int(major), int(minor)
