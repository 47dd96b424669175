"""The plugin's options, each settable on the command line, in the ini file or as ISOBOX_*.

Precedence: command line, then environment, then ini, then the default. A bad value is a
`pytest.UsageError` naming the option and the value, raised before any test runs. Every
boolean has a flag for each side (`--isobox-reuse`/`--isobox-no-reuse`), so the command line
can undo an ini or environment setting; ini keys are typed (a TOML `true` is a bool).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_isobox.homes import default_home

KEEP_POLICIES = ("never", "failed", "always")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_INI_TYPES = {"str": "string", "choice": "string", "bool": "bool", "path": "string",
              # pytest reads float ini values from 8.4 on; before, the text is parsed here
              "float": "float" if pytest.version_tuple >= (8, 4) else "string"}


@dataclass(frozen=True)
class Option:
    """One setting: its flag, its ini key, its environment variable and how it parses."""

    dest: str
    flag: str
    env: str
    help: str
    kind: str = "str"  # str, bool, choice, path, float
    choices: tuple[str, ...] = ()
    default: object = None
    negative: str = ""  # a bool's flag for False (its `flag` sets True)
    negative_help: str = ""

    @property
    def ini(self) -> str:
        return self.dest


OPTIONS = (
    Option("isobox_engine", "--isobox-engine", "ISOBOX_ENGINE",
           "container engine: native (embedded, daemonless; default), docker, or any engine "
           "an installed package registers (entry point group pytest_isobox.engines)",
           "str", default="native"),
    Option("isobox_keep", "--isobox-keep", "ISOBOX_KEEP",
           "keep containers after the run: never (default), failed (those a failing test used), "
           "always; prints how to exec into each", "choice", KEEP_POLICIES, "never"),
    Option("isobox_no_cache", "--isobox-no-cache", "ISOBOX_NO_CACHE",
           "build images without the build cache", "bool", default=False,
           negative="--isobox-cache", negative_help="build images with the build cache "
           "(the default; undoes isobox_no_cache)"),
    Option("isobox_reuse", "--isobox-reuse", "ISOBOX_REUSE",
           "reuse containers across runs while their configuration is unchanged",
           "bool", default=False, negative="--isobox-no-reuse",
           negative_help="start fresh containers (the default; undoes isobox_reuse)"),
    Option("isobox_home", "--isobox-home", "ISOBOX_HOME",
           "store for images, containers and caches (default $XDG_CACHE_HOME/isobox)", "path"),
    Option("isobox_docker_url", "--isobox-docker-url", "ISOBOX_DOCKER_URL",
           "Docker Engine address for --isobox-engine=docker (default: DOCKER_HOST or the "
           "local socket)"),
    Option("isobox_docker_hosts", "--isobox-docker-hosts", "ISOBOX_DOCKER_HOSTS",
           "comma-separated Docker hosts (tcp://, ssh://, unix://) for --isobox-engine=docker: "
           "xdist workers are spread over them, worker gwN on host N modulo their number "
           "(TLS from DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, for all of them)"),
    Option("isobox_rootless", "--isobox-rootless", "ISOBOX_ROOTLESS",
           "force the native engine's rootless mode (default: chosen from the user)",
           "bool", default=None, negative="--isobox-no-rootless",
           negative_help="force the native engine's rootful mode (needs root)"),
    Option("isobox_limits", "--isobox-limits", "ISOBOX_LIMITS",
           "rootless without a delegated cgroup: strict (default; limits are an error) or "
           "best-effort (run without them; the summary says so)", "choice",
           ("strict", "best-effort"), "strict"),
    Option("isobox_pull", "--isobox-pull", "ISOBOX_PULL",
           "when images are pulled from their registry: missing (default; images not in the "
           "store), always (once per run), never (ISOBOX_OFFLINE=1 never touches the network)",
           "choice", ("missing", "always", "never"), "missing"),
    Option("isobox_timeout", "--isobox-timeout", "ISOBOX_TIMEOUT",
           "default seconds a container may take to become ready (default 60)",
           "float", default=60.0),
)


def add_options(parser: pytest.Parser) -> None:
    """Register every option as flags and a typed ini key (the environment is read at resolve).

    Defaults stay None everywhere, so resolving can tell "not given" from "given as false".
    """
    group = parser.getgroup("isobox", "isobox containers")
    for opt in OPTIONS:
        help_text = f"{opt.help} [env {opt.env}, ini {opt.ini}]"
        if opt.kind == "bool":
            group.addoption(opt.flag, action="store_const", const="1", dest=opt.dest,
                            default=None, help=help_text)
            if opt.negative:
                group.addoption(opt.negative, action="store_const", const="0", dest=opt.dest,
                                default=None, help=opt.negative_help)
        else:
            group.addoption(opt.flag, action="store", dest=opt.dest, default=None,
                            choices=opt.choices or None, help=help_text)
        parser.addini(opt.ini, opt.help, type=_INI_TYPES[opt.kind], default=None)


@dataclass(frozen=True)
class Settings:
    """Resolved options for one pytest run."""

    engine: str = "native"
    keep: str = "never"
    no_cache: bool = False
    reuse: bool = False
    home: Path | None = None
    docker_url: str | None = None
    docker_hosts: tuple[str, ...] = ()
    rootless: bool | None = None
    limits: str = "strict"
    timeout: float = 60.0
    pull: str = "missing"

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        values = {opt.dest: _resolve(config, opt) for opt in OPTIONS}
        _check_engine(values["isobox_engine"])
        return cls(
            engine=values["isobox_engine"], keep=values["isobox_keep"],
            no_cache=values["isobox_no_cache"], reuse=values["isobox_reuse"],
            home=values["isobox_home"], docker_url=values["isobox_docker_url"],
            docker_hosts=tuple(h.strip() for h in (values["isobox_docker_hosts"] or "")
                               .split(",") if h.strip()),
            rootless=values["isobox_rootless"], limits=values["isobox_limits"],
            timeout=values["isobox_timeout"], pull=values["isobox_pull"],
        )

    @property
    def store(self) -> Path:
        """The isobox home: the option, else ISOBOX_HOME, else $XDG_CACHE_HOME/isobox."""
        if self.home is not None:
            return self.home
        return default_home()



def _check_engine(name: str) -> None:
    """An engine name nobody registered fails the run before any test, in one line (a
    built-in name costs nothing: only other names scan the installed entry points)."""
    from pytest_isobox.engine import InvalidSpec
    from pytest_isobox.engine.registry import factory, is_builtin

    if is_builtin(name):
        return
    try:
        factory(name)
    except InvalidSpec as exc:
        raise pytest.UsageError(f"isobox_engine: {exc}") from None


def given_options(config: pytest.Config) -> list[str]:
    """The isobox options set on the command line, in the environment or in the ini file."""
    return [opt.dest for opt in OPTIONS
            if config.getoption(opt.dest) is not None or os.environ.get(opt.env) is not None
            or _ini(config, opt) not in (None, "", [])]


def _resolve(config: pytest.Config, opt: Option) -> object:
    raw, source = config.getoption(opt.dest), opt.flag
    if raw is None and os.environ.get(opt.env) is not None:
        raw, source = os.environ[opt.env], f"environment variable {opt.env}"
    if raw is None:
        raw, source = _ini(config, opt), f"ini option {opt.ini}"
        if isinstance(raw, bool):
            return raw
        if opt.kind == "path" and raw and config.inipath:  # relative to the ini file
            raw = str(config.inipath.parent / Path(str(raw).strip()).expanduser())
    if raw is None or (raw == "" and opt.kind != "bool"):
        return opt.default
    return _parse(opt, str(raw).strip(), source)


def _ini(config: pytest.Config, opt: Option) -> object:
    """The ini value as pytest typed it; a value of the wrong type is a one-line UsageError."""
    try:
        return config.getini(opt.ini)
    except (TypeError, ValueError, pytest.UsageError) as exc:  # pytest >= 9.2 says UsageError
        where = f" in {config.inipath}" if config.inipath else ""
        raise pytest.UsageError(f"ini option {opt.ini}{where}: "
                                f"{str(exc).removeprefix(f'{config.inipath}: ')}") from None


def _parse(opt: Option, raw: str, source: str) -> object:
    if opt.kind == "bool":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise pytest.UsageError(f"{source}: {raw!r} is not a boolean (use 1/0, true/false)")
    if opt.kind == "choice" and raw not in opt.choices:
        raise pytest.UsageError(
            f"{source}: {raw!r} is not one of {', '.join(opt.choices)}")
    if opt.kind == "float":
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value <= 0:
            raise pytest.UsageError(f"{source}: {raw!r} is not a positive number of seconds")
        return value
    if opt.kind == "path":
        return Path(raw).expanduser().absolute()
    return raw
