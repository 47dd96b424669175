"""What the metadata instructions do to an image's runtime config, as Docker stores it.

Pure functions over the OCI config's `config` section (Env, Cmd, ExposedPorts, Healthcheck, ...)
taking already-expanded values; they never touch files. Each raises BuildError naming the value
at fault.
"""

from __future__ import annotations

import posixpath
import re

from pytest_isobox.engine import BuildError

DEFAULT_SHELL = ["/bin/sh", "-c"]
_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                   "m": 60_000_000_000, "h": 3_600_000_000_000}


def env_dict(config: dict) -> dict[str, str]:
    """The config's Env list as an ordered dict."""
    out: dict[str, str] = {}
    for item in config.get("Env") or []:
        name, _, value = item.partition("=")
        out[name] = value
    return out


def set_env(config: dict, pairs: list[tuple[str, str]]) -> None:
    """ENV: set or replace each name, keeping the order of first definition."""
    env = env_dict(config)
    for name, value in pairs:
        if not name:
            raise BuildError("ENV names can not be blank")
        env[name] = value
    config["Env"] = [f"{k}={v}" for k, v in env.items()]


def set_labels(config: dict, pairs: list[tuple[str, str]]) -> None:
    """LABEL: add or replace labels."""
    labels = dict(config.get("Labels") or {})
    for name, value in pairs:
        if not name:
            raise BuildError("LABEL names can not be blank")
        labels[name] = value
    config["Labels"] = labels


def expose(config: dict, ports: list[str]) -> None:
    """EXPOSE: `80`, `80/tcp`, `53/udp`, ranges `8000-8002` -> ExposedPorts `{"80/tcp": {}}`."""
    exposed = dict(config.get("ExposedPorts") or {})
    for raw in ports:
        body, _, proto = raw.partition("/")
        proto = (proto or "tcp").lower()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", body)
        if proto not in ("tcp", "udp", "sctp") or not m:
            raise BuildError(f"EXPOSE: invalid port {raw!r}: expected PORT[-PORT][/tcp|udp|sctp]")
        low, high = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 0 < low <= high <= 65535:
            raise BuildError(f"EXPOSE: invalid port {raw!r}: out of range")
        for port in range(low, high + 1):
            exposed[f"{port}/{proto}"] = {}
    config["ExposedPorts"] = exposed


def add_volumes(config: dict, paths: list[str]) -> None:
    """VOLUME: add mount points."""
    volumes = dict(config.get("Volumes") or {})
    for path in paths:
        if not path.strip():
            raise BuildError("VOLUME specified can not be an empty string")
        volumes[path] = {}
    config["Volumes"] = volumes


def command_form(config: dict, args: list[str], json_form: bool) -> list[str]:
    """CMD/ENTRYPOINT/RUN argv: the JSON list as is, the shell form through the config's SHELL."""
    if json_form:
        return list(args)
    return [*(config.get("Shell") or DEFAULT_SHELL), " ".join(args)]


def working_dir(config: dict, path: str) -> str:
    """WORKDIR: absolute, resolved against the previous working directory."""
    if not path:
        raise BuildError("WORKDIR can not be empty")
    return posixpath.normpath(posixpath.join(config.get("WorkingDir") or "/", path))


def stop_signal(value: str) -> str:
    """STOPSIGNAL: a signal name (`SIGTERM`, `TERM`) or number, validated, kept as written."""
    if value.isdigit():
        if 0 < int(value) < 65:
            return value
    else:
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        import signal

        if hasattr(signal.Signals, name) or re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
            return value
    raise BuildError(f"STOPSIGNAL: invalid signal {value!r}")


def parse_duration(flag: str, text: str | None) -> int:
    """A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds, as Docker stores HEALTHCHECK."""
    if not text:
        return 0
    total, pos = 0, 0
    for m in re.finditer(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", text):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * _DURATION_UNITS[m.group(2)])
        pos = m.end()
    if pos != len(text) and text != "0":
        raise BuildError(f"HEALTHCHECK: invalid duration --{flag}={text!r}")
    return total


def healthcheck(config: dict, values: dict[str, str], args: list[str], json_form: bool) -> None:
    """HEALTHCHECK [--interval --timeout --start-period --start-interval --retries] CMD ... | NONE.

    `values` holds the flags given (name without dashes -> value); durations are stored in ns.
    """
    if not args:
        raise BuildError("HEALTHCHECK requires at least one argument")
    kind = args[0].upper()
    if kind == "NONE":
        if len(args) > 1:
            raise BuildError("HEALTHCHECK NONE takes no arguments")
        config["Healthcheck"] = {"Test": ["NONE"]}
        return
    if kind != "CMD" or len(args) < 2:
        raise BuildError(f"HEALTHCHECK: unknown type {args[0]!r} (expected CMD or NONE)")
    test = ["CMD", *args[1:]] if json_form else ["CMD-SHELL", " ".join(args[1:])]
    check: dict = {"Test": test}
    for flag, field in (("interval", "Interval"), ("timeout", "Timeout"),
                        ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        ns = parse_duration(flag, values.get(flag))
        if ns:
            if ns < 1_000_000 and flag != "start-period":
                raise BuildError(f"HEALTHCHECK: --{flag} can not be less than 1ms")
            check[field] = ns
    if "retries" in values:
        if not values["retries"].isdigit():
            raise BuildError(f"HEALTHCHECK: invalid --retries={values['retries']!r}")
        if int(values["retries"]):
            check["Retries"] = int(values["retries"])
    config["Healthcheck"] = check
