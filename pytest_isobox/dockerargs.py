"""Docker's argument syntax, parsed in one place for the CLI, the fixtures and the API server:
sizes (`256m`), ports (`-p`), ulimits, environment (`-e`) and labels, mounts (`-v`, `--tmpfs`,
`--mount`) and network choices. Every error is an InvalidSpec whose one line names the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_isobox.engine.errors import InvalidSpec
from pytest_isobox.engine.specs import MountSpec, NetworkAttachment, PortSpec

BUILTIN_NETWORK_MODES = ("bridge", "none", "host")
ULIMIT_NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack", "as")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: int | str | None) -> int | None:
    """Docker's size syntax (`256m`, `1g`, `512k`, `1024`) to bytes; None stays None."""
    if value is None or isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*", str(value).lower())
    if not m:
        raise InvalidSpec(f"invalid size {value!r}: expected a number with an optional unit "
                          "b, k, m, g")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def parse_port(text: str | int) -> PortSpec:
    """Docker's `-p` syntax: `8080`, `8080/udp`, `9000:8080`, `127.0.0.1:0:8080/tcp`,
    `[::1]:0:8080`. Without a host address the port binds loopback only (ours, safer than
    Docker's 0.0.0.0)."""
    raw = str(text)
    body, _, proto = raw.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidSpec(f"invalid port {raw!r}: protocol must be tcp or udp")
    parts = body.rsplit(":", 2) if not body.startswith("[") else _split_v6(body)
    if len(parts) == 1:
        return PortSpec(_port(parts[0], raw), proto)
    if len(parts) == 2:
        return PortSpec(_port(parts[1], raw), proto, host_port=_port(parts[0] or "0", raw, 0))
    host_ip = parts[0].strip("[]") or "127.0.0.1"
    return PortSpec(_port(parts[2], raw), proto, host_ip, _port(parts[1] or "0", raw, 0))


def _split_v6(body: str) -> list[str]:
    host, _, rest = body[1:].partition("]")
    return [host, *rest.lstrip(":").split(":")]


def _port(text: str, raw: str, low: int = 1) -> int:
    if not text.isdigit() or not low <= int(text) <= 65535:
        raise InvalidSpec(f"invalid port {raw!r}: {text!r} is not a port number")
    return int(text)


def parse_ulimit(text: str) -> tuple[str, tuple[int, int]]:
    """Docker's `--ulimit name=soft[:hard]` (-1 for unlimited) to (name, (soft, hard))."""
    name, sep, values = text.partition("=")
    soft, _, hard = values.partition(":")
    try:
        limits = (int(soft), int(hard or soft))
    except ValueError:
        limits = None
    if not sep or name not in ULIMIT_NAMES or limits is None:
        raise InvalidSpec(f"invalid ulimit {text!r}: expected NAME=SOFT[:HARD] with NAME one of "
                          f"{', '.join(ULIMIT_NAMES)}")
    soft_value, hard_value = (float("inf") if v == -1 else v for v in limits)
    if soft_value > hard_value:
        raise InvalidSpec(f"invalid ulimit {text!r}: soft limit above hard limit")
    return name, limits


def parse_env(value: Mapping[str, Any] | Sequence[str] | None,
              environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Docker's `-e`: `KEY=VALUE`, or `KEY` alone for the caller's own value of KEY (left out
    when the caller has none); a mapping is taken as it is."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    env: dict[str, str] = {}
    for item in value:
        key, sep, val = str(item).partition("=")
        if not key:
            raise InvalidSpec(f"invalid environment entry {item!r}: expected KEY=VALUE")
        if sep:
            env[key] = val
        elif key in environ:
            env[key] = environ[key]
    return env


def parse_labels(value: Mapping[str, Any] | Sequence[str] | None) -> dict[str, str]:
    """Docker's `--label KEY=VALUE` (`KEY` alone: an empty value); a mapping as it is."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    labels: dict[str, str] = {}
    for item in value:
        key, _, val = str(item).partition("=")
        if not key:
            raise InvalidSpec(f"invalid label {item!r}: expected KEY=VALUE")
        labels[key] = val
    return labels


def parse_volume(text: str, base: Path, *, tmpfs_source: bool = False) -> MountSpec:
    """Docker's `-v SRC:DST[:ro|rw]`: SRC with a slash or a leading `.`/`~` is a host path
    (relative ones taken from `base`), else a named volume. With `tmpfs_source` (the
    fixtures' shorthand), SRC `tmpfs` is a tmpfs."""
    parts = str(text).split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and not set(parts[2].split(","))
                                    <= {"ro", "rw", "z", "Z"}):
        forms = "SOURCE:TARGET[:ro], tmpfs:TARGET or a dict" if tmpfs_source else \
            "SOURCE:TARGET[:ro]"
        raise InvalidSpec(f"invalid volume {text!r}: expected {forms}")
    source, target = parts[0], parts[1]
    read_only = len(parts) == 3 and "ro" in parts[2].split(",")
    if not target.startswith("/"):
        raise InvalidSpec(f"invalid volume {text!r}: the target {target!r} must be an "
                          "absolute path")
    if tmpfs_source and source == "tmpfs":
        return MountSpec("tmpfs", target, read_only=read_only)
    if "/" in source or source.startswith((".", "~")):
        host = (base / Path(source).expanduser()).resolve()
        return MountSpec("bind", target, str(host), read_only)
    if not source:
        raise InvalidSpec(f"invalid volume {text!r}: the source is empty")
    return MountSpec("volume", target, source, read_only)


def parse_tmpfs(text: str) -> MountSpec:
    """Docker's `--tmpfs DST[:OPTIONS]` (size=, ro)."""
    target, _, opts = str(text).partition(":")
    if not target.startswith("/"):
        raise InvalidSpec(f"invalid tmpfs {text!r}: the target must be an absolute path")
    options = [o for o in opts.split(",") if o]
    size = next((parse_size(o[5:]) for o in options if o.startswith("size=")), None)
    return MountSpec("tmpfs", target, size=size, read_only="ro" in options)


def parse_mount(value: str | Mapping[str, Any], base: Path) -> MountSpec:
    """Docker's `--mount type=bind,source=S,target=T,readonly` (or the same as a mapping)."""
    if isinstance(value, str):
        fields: dict[str, Any] = {}
        for item in value.split(","):
            key, sep, val = item.partition("=")
            fields[key.strip()] = val if sep else True
    else:
        fields = dict(value)
    aliases = {"src": "source", "dst": "target", "destination": "target", "ro": "read_only",
               "readonly": "read_only", "tmpfs-size": "size"}
    data = {aliases.get(k, k): v for k, v in fields.items()}
    kind, target = data.pop("type", "volume"), data.pop("target", None)
    if kind not in ("bind", "tmpfs", "volume") or not target:
        raise InvalidSpec(f"invalid mount {value!r}: needs type bind, tmpfs or volume and a "
                          "target")
    read_only = data.pop("read_only", False) not in (False, "false", "0")
    size, source = parse_size(data.pop("size", None)), str(data.pop("source", ""))
    if data:
        raise InvalidSpec(f"invalid mount {value!r}: unknown field {next(iter(data))!r}")
    if kind == "bind":
        source = str((base / source).resolve())
    return MountSpec(kind, str(target), source, read_only, size)


def network_choice(names: Mapping[str, Sequence[str]]) -> tuple[str, list[NetworkAttachment]]:
    """The network mode and named attachments for networks chosen by name, each with its
    aliases. `bridge`, `none` and `host` stand alone; no name at all is the default bridge."""
    if len(names) == 1 and next(iter(names)) in BUILTIN_NETWORK_MODES:
        return next(iter(names)), []
    if any(n in BUILTIN_NETWORK_MODES for n in names):
        raise InvalidSpec(f"networks {list(names)}: bridge, none and host cannot be combined "
                          "with named networks")
    attachments = [NetworkAttachment(str(net), tuple(dict.fromkeys(map(str, aliases))))
                   for net, aliases in names.items()]
    return ("bridge" if not attachments else attachments[0].network), attachments


# --------------------------------------------------------------------------- security

# In the kernel's order (capability numbers 0, 1, ...), without the CAP_ prefix.
CAPABILITY_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
# moby/oci/caps/defaults.go
DEFAULT_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


def parse_capabilities(names: Sequence[str] | None) -> list[str]:
    """`--cap-add`/`--cap-drop` values as Docker names them (`CAP_NET_ADMIN`, or `ALL`);
    with or without the prefix, any case. An unknown one is refused by name."""
    result: list[str] = []
    for raw in names or ():
        name = str(raw).strip().upper()
        if name == "ALL":
            result.append("ALL")
            continue
        if name.removeprefix("CAP_") not in CAPABILITY_NAMES:
            raise InvalidSpec(f"unknown capability: {raw!r}")
        result.append("CAP_" + name.removeprefix("CAP_"))
    return list(dict.fromkeys(result))


def effective_capabilities(cap_add: Sequence[str], cap_drop: Sequence[str],
                           privileged: bool = False) -> list[str]:
    """The capability names (no prefix) a container's root gets, as moby's
    TweakCapabilities decides: privileged or `--cap-add ALL` (minus drops) is every one,
    `--cap-drop ALL` leaves only the adds, else the defaults minus drops plus adds."""
    add = {n.removeprefix("CAP_") for n in parse_capabilities(cap_add)}
    drop = {n.removeprefix("CAP_") for n in parse_capabilities(cap_drop)}
    if privileged:
        return list(CAPABILITY_NAMES)
    if "ALL" in add:
        return [c for c in CAPABILITY_NAMES if c not in drop]
    if "ALL" in drop:
        return [c for c in CAPABILITY_NAMES if c in add]
    return [c for c in CAPABILITY_NAMES if (c in DEFAULT_CAPABILITIES and c not in drop)
            or c in add]
