"""The simple run options, one row each: the ContainerSpec field, the CLI flags of run/create,
the compose key, where the Engine API keeps it, and the converters between these forms.

Every front end and both engines' documents are generated from TABLE (cli/run_options.py,
the plugin's container() keywords, compose/model.py, server/translate.py,
docker/containers.py, native/container_json.py), so adding a simple option is one row here,
its ContainerSpec field and what the native engine does with it (its plan).
Options whose value spans several fields or documents (env, mounts, ports, networks, labels,
command/entrypoint, healthcheck, devices, ulimits, resources, sysctls, restart, ...) keep
their own converters where they are used; docs/architecture.md lists them.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping

from pytest_isobox.engine.errors import InvalidSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_SHM_SIZE = 64 * 1024 * 1024  # Docker's /dev/shm when --shm-size is not given


_FIELDS = ("field flags cli compose api parse to_api from_api inspect default prefix_errors "
           "example")


class RunOption(namedtuple("RunOption", _FIELDS, defaults=(None, False, None))):
    """One simple run option.

    `parse` turns a front end's value (the CLI's parsed flag, a compose value, a fixture
    keyword, the server's `from_api` result) into the spec's, raising InvalidSpec;
    `to_api` gives the create body's value for the spec's (None: left out);
    `from_api` reads a create body's value (None when absent) for `parse`;
    `inspect` gives Docker's inspect value for the value a stored spec keeps;
    `example` is a value the CLI takes (None: a flag without one), which
    tests/test_run_option_table.py gives to every front end.

    (Fields: field, the ContainerSpec field; flags, the CLI's; cli, their argparse keywords;
    compose, the compose key or None; api, "HostConfig.ReadonlyRootfs" or "Config.Tty"; parse,
    to_api, from_api, inspect; default, a fixture keyword's default; prefix_errors, whether a
    fixture's error names the keyword (`shm_size: ...`); example. A named tuple, not a
    dataclass: `inspect` reads the table, and dataclasses costs it some milliseconds.)
    """

    __slots__ = ()

    @property
    def section(self) -> str:
        return self.api.partition(".")[0]

    @property
    def key(self) -> str:
        return self.api.partition(".")[2]


def _dockerargs(name: str) -> Callable[[Any], Any]:
    """dockerargs' parser `name`, imported at its first call (dockerargs loads specs.py's
    dataclasses, which reading the table for `inspect` does not need)."""
    def parse(value: Any) -> Any:
        from pytest_isobox import dockerargs

        return getattr(dockerargs, name)(value)

    return parse


def listed(value: Any, sep: str = "=") -> list[str]:
    """A list, a lone string or a mapping (`{a: 1}` as `a=1`) as a list of strings (compose's
    list-or-mapping values, as Docker's `a=1` strings)."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [f"{k}{sep}{v}" for k, v in value.items()]
    return [str(v) for v in ([value] if isinstance(value, str) else value)]


def _api_bool(value: Any, name: str) -> bool:
    return bool(value)


def _api_strings(value: Any, name: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidSpec(f"invalid {name}: {value!r} is not a list of strings")
    return value


def _api_size(value: Any, name: str) -> int | None:
    if value in (None, 0):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSpec(f"invalid {name}: {value!r} is not a positive int")
    return value


def _true_or_none(value: Any) -> bool | None:
    return True if value else None


def _list_or_none(value: Any) -> list | None:
    return list(value) if value else None


def _flag(name: str, flags: tuple[str, ...], api: str, help: str | None = None,
          compose: str | None = None) -> RunOption:
    """A boolean option: a store_true flag, True in the create body only when set."""
    cli: dict[str, Any] = {"action": "store_true"}
    if help:
        cli["help"] = help
    return RunOption(name, flags, cli, compose or name, api, parse=bool, to_api=_true_or_none,
                     from_api=_api_bool, inspect=bool, default=False)


def _strings(name: str, flags: tuple[str, ...], api: str, metavar: str, help: str | None,
             parse: Callable[[Any], Any], example: str, compose: str | None = None,
             inspect: Callable[[Any], Any] = _list_or_none) -> RunOption:
    """A repeatable option: one value per flag, a list in the spec and the API."""
    cli: dict[str, Any] = {"action": "append", "metavar": metavar}
    if help:
        cli["help"] = help
    return RunOption(name, flags, cli, compose or name, api, parse=parse,
                     to_api=_list_or_none, from_api=_api_strings, inspect=inspect, default=(),
                     example=example)


TABLE: tuple[RunOption, ...] = (
    _flag("read_only", ("--read-only",), "HostConfig.ReadonlyRootfs",
          "mount the container's root filesystem as read only"),
    _strings("cap_add", ("--cap-add",), "HostConfig.CapAdd", "CAP",
             "add a Linux capability (CAP_NET_ADMIN or NET_ADMIN, ALL)",
             _dockerargs("parse_capabilities"), "NET_ADMIN"),
    _strings("cap_drop", ("--cap-drop",), "HostConfig.CapDrop", "CAP",
             "drop a Linux capability (ALL drops every one)", _dockerargs("parse_capabilities"),
             "MKNOD"),
    _flag("privileged", ("--privileged",), "HostConfig.Privileged",
          "every capability, no seccomp, no masked paths, the host's devices"),
    RunOption("shm_size", ("--shm-size",), {"help": "size of /dev/shm, e.g. 128m (default 64m)"},
              "shm_size", "HostConfig.ShmSize", parse=_dockerargs("parse_size"),
              to_api=lambda v: v, from_api=_api_size,
              inspect=lambda v: v or DEFAULT_SHM_SIZE, prefix_errors=True, example="128m"),
    _strings("extra_hosts", ("--add-host",), "HostConfig.ExtraHosts", "NAME:IP",
             "an /etc/hosts line; IP host-gateway is the host as seen from the container",
             lambda v: [_dockerargs("parse_extra_host")(h) for h in listed(v, sep=":")],
             "db.example:192.0.2.9"),
    _strings("dns", ("--dns",), "HostConfig.Dns", "IP", "a nameserver",
             lambda v: [_dockerargs("parse_ip")(d) for d in listed(v)], "192.0.2.53",
             inspect=list),
    _strings("dns_search", ("--dns-search",), "HostConfig.DnsSearch", "DOMAIN", None,
             listed, "example.com", inspect=list),
    _strings("dns_options", ("--dns-option",), "HostConfig.DnsOptions", "OPTION", None,
             listed, "ndots:2", compose="dns_opt", inspect=list),
    _flag("init", ("--init",), "HostConfig.Init"),
)
"""Rows in the order the CLI's help lists them."""

BY_FIELD: dict[str, RunOption] = {row.field: row for row in TABLE}


def spec_values(values: Mapping[str, Any], *, prefix: bool = False) -> dict[str, Any]:
    """The spec's values of the rows given in `values` (a front end's, by field name);
    with `prefix`, a row's error names it (`shm_size: ...`), as a fixture's do."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        row = BY_FIELD[name]
        try:
            out[name] = row.parse(value)
        except InvalidSpec as exc:
            if prefix and row.prefix_errors:
                raise InvalidSpec(f"{name}: {exc}") from None
            raise
    return out


def create_fields(spec: Any) -> dict[str, dict[str, Any]]:
    """Each API section's fields (`{"HostConfig": {...}, "Config": {...}}`) for a spec."""
    out: dict[str, dict[str, Any]] = {"Config": {}, "HostConfig": {}}
    for row in TABLE:
        value = row.to_api(getattr(spec, row.field))
        if value is not None:
            out[row.section][row.key] = value
    return out


def from_create(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The spec's values of a create body (`{"Config": body, "HostConfig": host}`)."""
    return spec_values({row.field: row.from_api(sections[row.section].get(row.key), row.api)
                        for row in TABLE})


def inspect_fields(section: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """One inspect section's fields of the rows there, from a stored spec (a dict)."""
    return {row.key: row.inspect(spec[row.field] if row.field in spec
                                 else row.parse(row.default))
            for row in TABLE if row.section == section}
