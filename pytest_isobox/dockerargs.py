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
from pytest_isobox.engine.specs import (
    DeviceSpec,
    HealthcheckSpec,
    MountSpec,
    NetworkAttachment,
    PortSpec,
    RestartPolicy,
)

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


def parse_ports(text: str | int) -> list[PortSpec]:
    """`-p` with Docker's ranges too: `8000-8001:8000-8001` (pairs in order), `9000-9001`
    (each on a free host port), `127.0.0.1:7000-7001:7000-7001/udp`. A host range for one
    container port (Docker picks a free one in it) is refused: ranges must be equal."""
    raw = str(text)
    body, slash, proto = raw.partition("/")
    parts = body.rsplit(":", 2) if not body.startswith("[") else _split_v6(body)
    if "-" not in parts[-1] and (len(parts) < 2 or "-" not in parts[-2]):
        return [parse_port(raw)]
    inner = _port_range(parts[-1], raw)
    outer = _port_range(parts[-2], raw) if len(parts) >= 2 and parts[-2] else None
    if outer is not None and len(outer) != len(inner):
        raise InvalidSpec(f"invalid port {raw!r}: host range {parts[-2]} and container range "
                          f"{parts[-1]} differ in length")
    ip = (parts[0] if len(parts) == 3 else "").strip("[]")
    prefix = f"[{ip}]:" if ":" in ip else f"{ip}:" if ip else ""
    tail = f"/{proto}" if slash else ""
    return [parse_port(f"{prefix}{'' if outer is None else outer[i]}:{port}{tail}"
                       if outer is not None or prefix else f"{port}{tail}")
            for i, port in enumerate(inner)]


def _port_range(text: str, raw: str) -> list[int]:
    low, dash, high = text.partition("-")
    first = _port(low, raw, 0 if not dash else 1)
    last = _port(high, raw) if dash else first
    if last < first:
        raise InvalidSpec(f"invalid port {raw!r}: range {text} ends before it starts")
    return list(range(first, last + 1))


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
        if not source:
            raise InvalidSpec(f"invalid mount {value!r}: a bind mount needs a source")
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


def parse_device(text: str) -> DeviceSpec:
    """Docker's `--device HOST[:CONTAINER][:PERMS]` (PERMS of r, w, m; default rwm)."""
    parts = str(text).split(":")
    perms = "rwm"
    if len(parts) > 1 and parts[-1] and set(parts[-1]) <= set("rwm"):
        perms = parts.pop()
    if len(parts) > 2 or not parts[0]:
        raise InvalidSpec(f"invalid device {text!r}: expected HOST[:CONTAINER][:PERMISSIONS]")
    host, container = parts[0], parts[1] if len(parts) == 2 else parts[0]
    if not host.startswith("/") or not container.startswith("/"):
        raise InvalidSpec(f"invalid device {text!r}: paths must be absolute")
    return DeviceSpec(host, container, perms)


# moby/daemon/oci_linux.go and runc's validator: the sysctls a container's own namespaces hold
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def parse_sysctl(text: str, network_mode: str = "bridge") -> tuple[str, str]:
    """Docker's `--sysctl KEY=VALUE`, for namespaced parameters only (IPC's kernel.shm*,
    kernel.msg*, kernel.sem, fs.mqueue.*; net.* unless the host's network is shared)."""
    key, sep, value = str(text).partition("=")
    key = key.strip().replace("/", ".")
    if not sep or not key:
        raise InvalidSpec(f"invalid sysctl {text!r}: expected KEY=VALUE")
    if key.startswith("net."):
        if network_mode == "host":
            raise InvalidSpec(f"sysctl {key!r} not allowed in host network namespace")
    elif not (key in _IPC_SYSCTLS or key.startswith("fs.mqueue.")):
        raise InvalidSpec(f"sysctl {key!r} is not allowed: only namespaced ones (net.*, "
                          "kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)")
    if ".." in key or not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
        raise InvalidSpec(f"invalid sysctl {text!r}: bad key")
    return key, value


# --------------------------------------------------------------------------- name resolution

def parse_extra_host(text: str) -> str:
    """Docker's `--add-host NAME:IP` (or NAME=IP; IP may be IPv6 or `host-gateway`), as
    `NAME:IP`."""
    import ipaddress

    raw = str(text)
    name, sep, ip = raw.partition("=") if "=" in raw else raw.partition(":")
    ip = ip.strip("[]")
    if not sep or not name or not ip:
        raise InvalidSpec(f"invalid argument {raw!r} for --add-host: expected NAME:IP")
    if ip != "host-gateway":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidSpec(f"invalid IP address in add-host: {ip!r}") from None
    return f"{name}:{ip}"


def parse_ip(text: str, what: str = "--dns") -> str:
    """An IPv4 or IPv6 address, as given."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(str(text).strip()))
    except ValueError:
        raise InvalidSpec(f"{text!r} is not an IP address (for {what})") from None


# --------------------------------------------------------------------------- files of lines

def parse_key_value_file(path: str | Path, *, from_environment: bool,
                         environ: Mapping[str, str] = os.environ) -> list[str]:
    """Docker's `--env-file`/`--label-file`: one KEY=VALUE a line (the value as written, no
    quotes removed), blank lines and lines starting with `#` skipped. A KEY alone takes the
    caller's value with `from_environment` (left out when unset), else stays as it is (an
    empty label). A bad line is an InvalidSpec naming `file:line`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidSpec(f"open {path}: {exc.strerror}") from None
    entries: list[str] = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode().rstrip("\r").lstrip()
        except UnicodeDecodeError:
            raise InvalidSpec(f"{path}:{number}: invalid utf8 bytes") from None
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key:
            raise InvalidSpec(f"{path}:{number}: no variable name on line {line!r}")
        if re.search(r"\s", key):
            raise InvalidSpec(f"{path}:{number}: variable {key!r} contains whitespaces")
        if sep:
            entries.append(f"{key}={value}")
        elif not from_environment:
            entries.append(key)
        elif key in environ:
            entries.append(f"{key}={environ[key]}")
    return entries


# --------------------------------------------------------------------------- ports

def parse_expose(text: str | int) -> list[str]:
    """Docker's `--expose PORT[/PROTO]` or a range `START-END[/PROTO]`, as `PORT/PROTO` keys."""
    raw = str(text)
    body, _, proto = raw.partition("/")
    proto = proto or "tcp"
    start, _, end = body.partition("-")
    if proto not in ("tcp", "udp") or not start.isdigit() or (end and not end.isdigit()):
        raise InvalidSpec(f"invalid range format for --expose: {raw!r}")
    first, last = int(start), int(end or start)
    if not 1 <= first <= last <= 65535:
        raise InvalidSpec(f"invalid range format for --expose: {raw!r}")
    return [f"{port}/{proto}" for port in range(first, last + 1)]


def exposed_ports(image_config: Mapping[str, Any], expose: Sequence[str]) -> list[str]:
    """Every port a container exposes: its image's (ExposedPorts) and `--expose`'s."""
    keys = [str(k) if "/" in str(k) else f"{k}/tcp"
            for k in (image_config.get("ExposedPorts") or {})]
    return list(dict.fromkeys([*keys, *expose]))


def publish_all_ports(exposed: Sequence[str], ports: Sequence[PortSpec]) -> list[PortSpec]:
    """`-P`: the exposed ports that no `-p` publishes, each on a free loopback port."""
    taken = {p.key for p in ports}
    extra = []
    for key in exposed:
        number, _, proto = key.partition("/")
        if key not in taken:
            extra.append(PortSpec(int(number), proto or "tcp"))  # type: ignore[arg-type]
    return [*ports, *extra]


# --------------------------------------------------------------------------- life and health

def parse_restart(text: str | None) -> RestartPolicy | None:
    """Docker's `--restart no|on-failure[:N]|always|unless-stopped`."""
    if text is None:
        return None
    name, sep, count = str(text).partition(":")
    if name not in ("no", "on-failure", "always", "unless-stopped") \
            or (sep and (name != "on-failure" or not count.isdigit())):
        raise InvalidSpec(f"invalid restart policy {text!r}: expected no, on-failure[:N], "
                          "always or unless-stopped")
    return RestartPolicy(name, int(count) if sep else 0)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}


def parse_duration(text: str | float | None, what: str) -> float:
    """Go's duration syntax (`30s`, `1m30s`, `500ms`) to seconds; a bare number is seconds
    (the fixtures' shape); None is 0 (Docker's default)."""
    if text is None:
        return 0.0
    if isinstance(text, int | float):
        value = float(text)
    else:
        raw = str(text).strip()
        parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", raw)
        if raw == "0":
            value = 0.0
        elif not parts or "".join(n + u for n, u in parts) != raw:
            raise InvalidSpec(f"invalid duration {text!r} for {what}: expected e.g. 30s, "
                              "1m30s, 500ms")
        else:
            value = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if value < 0:
        raise InvalidSpec(f"{what} must not be negative: {text!r}")
    return value


def healthcheck(cmd: str | Sequence[str] | None = None, *, interval: Any = None,
                timeout: Any = None, retries: int | None = None, start_period: Any = None,
                disabled: bool = False) -> HealthcheckSpec | None:
    """The healthcheck of `--health-*`/`--no-healthcheck`: None when nothing is given (the
    image's own applies); a string command runs in a shell (CMD-SHELL), a list as is (CMD).
    Options without a command keep the image's test (an empty one)."""
    if disabled:
        if cmd or interval or timeout or retries or start_period:
            raise InvalidSpec("--no-healthcheck conflicts with --health-* options")
        return HealthcheckSpec(("NONE",))
    if cmd is None and interval is None and timeout is None and retries is None \
            and start_period is None:
        return None
    if retries is not None and int(retries) < 0:
        raise InvalidSpec(f"--health-retries cannot be negative: {retries!r}")
    if cmd is None or cmd == "":
        test: tuple[str, ...] = ()
    elif isinstance(cmd, str):
        test = ("CMD-SHELL", cmd)
    else:
        test = ("CMD", *map(str, cmd))
    return HealthcheckSpec(test, parse_duration(interval, "--health-interval"),
                           parse_duration(timeout, "--health-timeout"), int(retries or 0),
                           parse_duration(start_period, "--health-start-period"))


# --------------------------------------------------------------------------- odds and ends

_MACHINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
                 "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> str:
    """This machine's platform in Docker's words, e.g. `linux/amd64`."""
    machine = os.uname().machine
    return f"linux/{_MACHINE_ARCH.get(machine, machine)}"


def check_platform(text: str | None) -> str | None:
    """`--platform`: the host's own is accepted (with any variant); images of other
    platforms would need emulation, which is refused in one line."""
    if text is None or not str(text).strip():
        return None
    wanted = str(text).strip().lower()
    os_arch = "/".join(wanted.split("/")[:2]) if "/" in wanted else f"linux/{wanted}"
    if os_arch != host_platform():
        raise InvalidSpec(f"platform {text!r} is not this host's ({host_platform()}): "
                          "emulation is not supported")
    return wanted


def check_working_dir(path: str | None) -> str | None:
    """`-w`: Docker takes an absolute path only."""
    if path is not None and not str(path).startswith("/"):
        raise InvalidSpec(f"the working directory {path!r} is invalid, it needs to be an "
                          "absolute path")
    return path
