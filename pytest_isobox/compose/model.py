"""The merged compose document as typed services, networks and volumes, and each service as
the seam's ContainerSpec. Only the keys in SUPPORTED are understood; any other is refused by
name (`services.web.privileged: not supported by isobox compose`), never ignored. Docker's
value syntax (ports, sizes, mounts, environment) goes through dockerargs, the one parser.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_isobox.compose import ComposeError
from pytest_isobox.compose.interpolation import read_env_file
from pytest_isobox.run_options_table import TABLE, listed, spec_values

SUPPORTED_TOP = {"version", "name", "services", "networks", "volumes"}
SUPPORTED = {
    "image", "build", "ports", "expose", "environment", "env_file", "command", "entrypoint",
    "depends_on", "healthcheck", "networks", "volumes", "tmpfs", "deploy", "mem_limit", "cpus",
    "pids_limit", "profiles", "labels", "working_dir", "user", "hostname",
    "stop_signal", "stop_grace_period", "tty", "stdin_open", "ulimits", "security_opt",
    "container_name", "restart", "devices", "sysctls", "platform", "network_mode",
    *(row.compose for row in TABLE if row.compose),  # the simple options, one row each
}
NETWORK_MODES = ("host", "none", "bridge")  # not service:NAME or container:NAME
SUPPORTED_BUILD = {"context", "dockerfile", "args", "target"}
SUPPORTED_HEALTHCHECK = {"test", "interval", "timeout", "retries", "start_period", "disable"}
SUPPORTED_NETWORK = {"name", "external", "labels", "driver"}
SUPPORTED_VOLUME = {"name", "external", "labels", "driver"}
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
CONFIG_HASH_LABEL = "com.docker.compose.config-hash"


def _refuse(where: str, keys: Iterable[str], supported: set[str]) -> None:
    for key in keys:
        if key not in supported and not str(key).startswith("x-"):
            raise ComposeError(f"{where}.{key}: not supported by isobox compose")


def refuse_keys(document: Mapping[str, Any], source: str) -> None:
    """One file's keys checked by name before it is merged, so the line names the file the
    key is in: `b.yml: services.web.secrets: not supported by isobox compose`."""
    try:
        _refuse("", document, SUPPORTED_TOP)
        for name, service in (document.get("services") or {}).items():
            where = f"services.{name}"
            service = service or {}
            _refuse(where, service, SUPPORTED | {"extends"})
            for key, allowed in (("build", SUPPORTED_BUILD),
                                 ("healthcheck", SUPPORTED_HEALTHCHECK), ("deploy", {"resources"})):
                if isinstance(service.get(key), Mapping):
                    _refuse(f"{where}.{key}", service[key], allowed)
            resources = (service.get("deploy") or {}).get("resources") or {}
            _refuse(f"{where}.deploy.resources", resources, {"limits"})
            _refuse(f"{where}.deploy.resources.limits", resources.get("limits") or {},
                    {"cpus", "memory", "pids"})
            for key, allowed in (("depends_on", {"condition", "required"}),
                                 ("networks", {"aliases"})):
                if isinstance(service.get(key), Mapping):
                    for entry, options in service[key].items():
                        _refuse(f"{where}.{key}.{entry}", options or {}, allowed)
        for kind, allowed in (("networks", SUPPORTED_NETWORK), ("volumes", SUPPORTED_VOLUME)):
            for key, options in (document.get(kind) or {}).items():
                _refuse(f"{kind}.{key}", options or {}, allowed)
    except ComposeError as exc:
        raise ComposeError(f"{source}: {str(exc).lstrip('.')}") from None


def parse_duration(value: Any, where: str) -> float:
    """Compose durations (`1m30s`, `500ms`, `10s`, `2h`) in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ComposeError(f"{where}: invalid duration {value!r}: expected e.g. 10s, 1m30s")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def _words(value: Any) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


@dataclass
class Build:
    context: Path
    dockerfile: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass
class Service:
    """One service, its values checked; `raw` is the merged mapping it came from."""

    name: str
    raw: dict[str, Any]
    image: str | None
    build: Build | None
    depends_on: dict[str, str]  # service -> condition
    healthcheck: Any  # the seam's HealthcheckSpec (stored in the container), or None
    networks: dict[str, list[str]]  # compose network name -> aliases
    profiles: list[str]
    expose: list[str]

    @property
    def own_healthcheck(self) -> bool | None:
        """True: the service's own test; False: turned off (disable, NONE); None: the
        image's HEALTHCHECK, if it has one, applies."""
        if self.healthcheck is None or not self.healthcheck.test:
            return None
        return self.healthcheck.test[0] != "NONE"

    def image_ref(self, project: str) -> str:
        """The image to run: `image:` as given, or `<project>-<service>` when only built."""
        return self.image or f"{project}-{self.name}"


@dataclass
class Resource:
    """A top-level network or volume: the engine's name for it, and whether we own it."""

    key: str
    name: str
    external: bool
    labels: dict[str, str]


@dataclass
class Project:
    name: str
    directory: Path
    services: dict[str, Service]
    networks: dict[str, Resource]
    volumes: dict[str, Resource]
    env: dict[str, str]
    document: dict[str, Any]

    def order(self, names: Iterable[str] | None = None) -> list[str]:
        """Services (default: all) with what they depend on first."""
        done: list[str] = []

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in done:
                return
            if name in chain:
                raise ComposeError(f"services.{name}.depends_on: circular: "
                                   f"{' -> '.join(chain + (name,))}")
            for dep in self.services[name].depends_on:
                visit(dep, chain + (name,))
            done.append(name)

        for name in names or self.services:
            visit(name, ())
        return done


def project_name(explicit: str | None, document: Mapping[str, Any], directory: Path) -> str:
    """Compose's rule: -p, else `name:`, else the directory's name, lower-cased to [a-z0-9_-]."""
    raw = explicit or document.get("name") or directory.name
    name = re.sub(r"[^a-z0-9_-]", "", str(raw).lower()).lstrip("_-")
    if not name:
        raise ComposeError(f"project name {raw!r}: needs a letter or digit")
    return name


def _healthcheck(raw: Any, where: str) -> Any:
    """`healthcheck:` as the seam's HealthcheckSpec, which both engines keep in the container
    (State.Health): `disable` or `test: [NONE]` turn the image's off, a mapping without
    `test` keeps the image's command with the times given; 0 is Docker's default."""
    from pytest_isobox.engine.specs import HealthcheckSpec

    if raw is None:
        return None
    _refuse(where, raw, SUPPORTED_HEALTHCHECK)
    if raw.get("disable"):
        return HealthcheckSpec(("NONE",))
    test = raw.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    test = [str(t) for t in test or []]
    if test and test[0] == "NONE":
        return HealthcheckSpec(("NONE",))
    if test and (test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2):
        raise ComposeError(f"{where}.test: expected [CMD, ...], [CMD-SHELL, cmd] or a string")
    times = {key: parse_duration(raw[key], f"{where}.{key}") if key in raw else 0.0
             for key in ("interval", "timeout", "start_period")}
    retries = int(raw.get("retries") or 0)
    if retries < 0:
        raise ComposeError(f"{where}.retries: cannot be negative: {retries}")
    return HealthcheckSpec(tuple(test), times["interval"], times["timeout"], retries,
                           times["start_period"])


def _service(name: str, raw: dict[str, Any], directory: Path) -> Service:
    where = f"services.{name}"
    _refuse(where, raw, SUPPORTED)
    build = None
    if raw.get("build") is not None:
        b = raw["build"]
        _refuse(f"{where}.build", b, SUPPORTED_BUILD)
        build = Build((directory / str(b.get("context", "."))).resolve(), b.get("dockerfile"),
                      {k: "" if v is None else str(v) for k, v in (b.get("args") or {}).items()},
                      b.get("target"))
    if raw.get("image") is None and build is None:
        raise ComposeError(f"{where}: needs image or build")
    depends_on: dict[str, str] = {}
    for dep, options in (raw.get("depends_on") or {}).items():
        condition = (options or {}).get("condition", "service_started")
        if condition not in CONDITIONS:
            raise ComposeError(f"{where}.depends_on.{dep}.condition: {condition!r} is not one "
                               f"of {', '.join(CONDITIONS)}")
        _refuse(f"{where}.depends_on.{dep}", options or {}, {"condition", "required"})
        depends_on[str(dep)] = condition
    networks: dict[str, list[str]] = {}
    for net, options in (raw.get("networks") or {}).items():
        _refuse(f"{where}.networks.{net}", options or {}, {"aliases"})
        networks[str(net)] = [str(a) for a in (options or {}).get("aliases") or []]
    deploy = raw.get("deploy") or {}
    _refuse(f"{where}.deploy", deploy, {"resources"})
    _refuse(f"{where}.deploy.resources", deploy.get("resources") or {}, {"limits"})
    _refuse(f"{where}.deploy.resources.limits",
            (deploy.get("resources") or {}).get("limits") or {}, {"cpus", "memory", "pids"})
    return Service(
        name=name, raw=raw, image=raw.get("image"), build=build, depends_on=depends_on,
        healthcheck=_healthcheck(raw.get("healthcheck"), f"{where}.healthcheck"),
        networks=networks, profiles=[str(p) for p in raw.get("profiles") or []],
        expose=[str(e) for e in raw.get("expose") or []],
    )


def _resources(kind: str, raw: Mapping[str, Any] | None, project: str,
               supported: set[str]) -> dict[str, Resource]:
    out: dict[str, Resource] = {}
    for key, options in (raw or {}).items():
        options = options or {}
        _refuse(f"{kind}.{key}", options, supported)
        driver = options.get("driver")
        if driver not in (None, "bridge" if kind == "networks" else "local"):
            raise ComposeError(f"{kind}.{key}.driver: {driver!r} not supported by isobox compose")
        external = bool(options.get("external"))
        name = options.get("name") or (key if external else f"{project}_{key}")
        labels = {str(k): str(v) for k, v in (options.get("labels") or {}).items()} \
            if isinstance(options.get("labels"), Mapping) else {}
        out[str(key)] = Resource(str(key), str(name), external, labels)
    return out


def build_project(document: dict[str, Any], directory: Path, env: Mapping[str, str], *,
                  name: str | None = None, profiles: Iterable[str] = ()) -> Project:
    """The typed project: refused keys, profiles applied, references checked."""
    for key in document:
        if key not in SUPPORTED_TOP and not str(key).startswith("x-"):
            raise ComposeError(f"{key}: not supported by isobox compose")
    pname = project_name(name, document, directory)
    active = set(profiles)
    services: dict[str, Service] = {}
    for sname, raw in (document.get("services") or {}).items():
        service = _service(str(sname), raw, directory)
        if not service.profiles or active & set(service.profiles):
            services[service.name] = service
    networks = _resources("networks", document.get("networks"), pname, SUPPORTED_NETWORK)
    volumes = _resources("volumes", document.get("volumes"), pname, SUPPORTED_VOLUME)
    if any(not s.networks and s.raw.get("network_mode") is None for s in services.values()) \
            and "default" not in networks:
        networks["default"] = Resource("default", f"{pname}_default", False, {})
    for service in services.values():
        for dep in service.depends_on:
            if dep not in services:
                state = "not active (profiles)" if dep in (document.get("services") or {}) \
                    else "not defined"
                raise ComposeError(f"services.{service.name}.depends_on: service {dep!r} is "
                                   f"{state}")
        for net in service.networks:
            if net not in networks:
                raise ComposeError(f"services.{service.name}.networks: network {net!r} is not "
                                   "declared under the top-level networks")
    project = Project(pname, directory, services, networks, volumes, dict(env), document)
    project.order()
    for service in services.values():
        container_spec(project, service)  # every value checked before anything starts
    return project


def _ports(raw: list[Any], where: str) -> list[Any]:
    """Short syntax through dockerargs.parse_ports (ranges included), long syntax mapped to
    it: `{target: 80, published: "8080", host_ip: 127.0.0.1, protocol: udp}`."""
    from pytest_isobox.dockerargs import parse_ports
    from pytest_isobox.engine.errors import InvalidSpec
    from pytest_isobox.engine.specs import PortSpec

    ports = []
    for index, item in enumerate(raw):
        try:
            if isinstance(item, Mapping):
                _refuse(f"{where}[{index}]", item,
                        {"target", "published", "host_ip", "protocol", "mode", "name"})
                published = str(item.get("published") or "0")
                specs = parse_ports(f"{published}:{item['target']}/"
                                    f"{item.get('protocol', 'tcp')}")
                if item.get("host_ip"):
                    specs = [PortSpec(s.container_port, s.protocol, str(item["host_ip"]),
                                      s.host_port) for s in specs]
            else:
                specs = parse_ports(item)
        except InvalidSpec as exc:
            raise ComposeError(f"{where}[{index}]: {exc}") from None
        ports += specs
    return ports


def _mounts(project: Project, service: Service, where: str) -> list[Any]:
    from pytest_isobox.dockerargs import parse_mount, parse_tmpfs, parse_volume
    from pytest_isobox.engine.errors import InvalidSpec
    from pytest_isobox.engine.specs import MountSpec

    mounts = []
    for index, item in enumerate(service.raw.get("volumes") or []):
        at = f"{where}.volumes[{index}]"
        try:
            if isinstance(item, Mapping):
                _refuse(at, item, {"type", "source", "target", "read_only", "tmpfs"})
                fields = {k: v for k, v in item.items() if k != "tmpfs"}
                if (item.get("tmpfs") or {}).get("size") is not None:
                    fields["size"] = item["tmpfs"]["size"]
                mount = parse_mount(fields, project.directory)
            elif ":" not in str(item):
                mount = MountSpec("volume", str(item), "")
            else:
                mount = parse_volume(str(item), project.directory)
        except InvalidSpec as exc:
            raise ComposeError(f"{at}: {exc}") from None
        if mount.type == "volume":
            if not mount.source:
                anon = f"{project.name}_{service.name}_anon{index}"
                mount = MountSpec("volume", mount.target, anon, mount.read_only)
            elif mount.source in project.volumes:
                mount = MountSpec("volume", mount.target,
                                  project.volumes[mount.source].name, mount.read_only)
            else:
                raise ComposeError(f"{at}: volume {mount.source!r} is not declared under the "
                                   "top-level volumes")
        mounts.append(mount)
    tmpfs = service.raw.get("tmpfs") or []
    for index, item in enumerate([tmpfs] if isinstance(tmpfs, str) else tmpfs):
        try:
            mounts.append(parse_tmpfs(str(item)))
        except InvalidSpec as exc:
            raise ComposeError(f"{where}.tmpfs[{index}]: {exc}") from None
    return mounts


def anonymous_volumes(project: Project, service: Service) -> list[str]:
    """Names given to the service's anonymous volumes (removed by `down -v`)."""
    return [m.source for m in container_spec(project, service).mounts
            if m.type == "volume" and m.source.startswith(f"{project.name}_{service.name}_anon")]


def service_env(project: Project, service: Service) -> dict[str, str]:
    """env_file entries, then `environment` over them (a bare KEY from the project's env)."""
    from pytest_isobox.dockerargs import parse_env

    env: dict[str, str] = {}
    env_files = service.raw.get("env_file") or []
    for item in [env_files] if isinstance(env_files, str) else env_files:
        path = item if isinstance(item, str) else item.get("path")
        required = True if isinstance(item, str) else item.get("required", True)
        full = project.directory / str(path)
        if not full.is_file():
            if required:
                raise ComposeError(f"services.{service.name}.env_file: {full}: not found")
            continue
        env.update(read_env_file(full))
    environment = service.raw.get("environment") or {}
    entries = [k if v is None else f"{k}={v}" for k, v in environment.items()]
    env.update(parse_env(entries, project.env))
    return env


def container_name(project: Project, service: Service) -> str:
    return str(service.raw.get("container_name") or f"{project.name}-{service.name}-1")


def container_spec(project: Project, service: Service, *, persistent: bool = True) -> Any:
    """The seam's ContainerSpec for one service; `persistent` False for containers that die
    with the process that made them (the fixture's)."""
    from pytest_isobox.dockerargs import parse_labels, parse_size, parse_ulimit
    from pytest_isobox.engine.errors import InvalidSpec
    from pytest_isobox.engine.specs import ContainerSpec

    raw, where = service.raw, f"services.{service.name}"
    limits = ((raw.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    try:
        mem = parse_size(raw.get("mem_limit", limits.get("memory")))
        cpus = raw.get("cpus", limits.get("cpus"))
        mode, attachments = _network_mode(project, service)
        ulimits = {}
        for uname, value in (raw.get("ulimits") or {}).items():
            if isinstance(value, Mapping):
                value = f"{value['soft']}:{value['hard']}"
            ulimits.update([parse_ulimit(f"{uname}={value}")])
        labels = parse_labels(raw.get("labels"))
        options = _run_options(raw, mode if not attachments else "bridge")
        options.update(spec_values({row.field: raw.get(row.compose)
                                    for row in TABLE if row.compose}))
    except InvalidSpec as exc:
        raise ComposeError(f"{where}: {exc}") from None
    labels.update({PROJECT_LABEL: project.name, SERVICE_LABEL: service.name})
    stop = raw.get("stop_grace_period")
    return ContainerSpec(
        image=service.image_ref(project.name),
        command=_words(raw.get("command")),
        entrypoint=_words(raw.get("entrypoint")),
        env=service_env(project, service),
        working_dir=raw.get("working_dir"),
        user=None if raw.get("user") is None else str(raw["user"]),
        hostname=raw.get("hostname"),
        name=container_name(project, service),
        labels=labels,
        mem_limit=mem,
        cpus=None if cpus is None else float(cpus),
        pids_limit=raw.get("pids_limit", limits.get("pids")),
        tty=bool(raw.get("tty", False)),
        stdin_open=bool(raw.get("stdin_open", False)),
        network_mode=mode,
        networks=attachments,
        ports=_ports(raw.get("ports") or [], f"{where}.ports"),
        mounts=_mounts(project, service, where),
        stop_signal=raw.get("stop_signal"),
        stop_timeout=10.0 if stop is None else parse_duration(stop, f"{where}.stop_grace_period"),
        persistent=persistent,
        ulimits=ulimits,
        security_opt=[str(s) for s in raw.get("security_opt") or []],
        healthcheck=service.healthcheck,
        **options,
    )


def _network_mode(project: Project, service: Service) -> tuple[str, list[Any]]:
    """`network_mode: host|none|bridge` alone, else the service's networks (default: the
    project's default network), the service answering there to its name and aliases."""
    from pytest_isobox.dockerargs import network_choice

    where = f"services.{service.name}"
    mode = service.raw.get("network_mode")
    if mode is not None:
        if mode not in NETWORK_MODES:
            raise ComposeError(f"{where}.network_mode: {mode!r} not supported by isobox compose "
                               f"(one of {', '.join(NETWORK_MODES)})")
        if service.networks:
            raise ComposeError(f"{where}: network_mode and networks cannot be combined")
        return str(mode), []
    nets = service.networks or {"default": []}
    return network_choice(
        {project.networks[n].name: [service.name, *aliases] for n, aliases in nets.items()})


def _run_options(raw: Mapping[str, Any], network_mode: str) -> dict[str, Any]:
    """The run options of `docker run` a service may carry, through the CLI's parsers."""
    from pytest_isobox import dockerargs

    return {
        "expose": [k for e in raw.get("expose") or [] for k in dockerargs.parse_expose(e)],
        "restart": dockerargs.parse_restart(raw.get("restart")),
        "devices": [dockerargs.parse_device(d if isinstance(d, str) else
                                            f"{d['source']}:{d.get('target', d['source'])}"
                                            f":{d.get('permissions', 'rwm')}")
                    for d in raw.get("devices") or []],
        "sysctls": dict(dockerargs.parse_sysctl(item, network_mode)
                        for item in listed(raw.get("sysctls"))),
        "platform": dockerargs.check_platform(raw.get("platform")),
    }


def load_project(files: Iterable[str | Path] | None = None, *, project_name: str | None = None,
                 profiles: Iterable[str] = (), env_files: Iterable[str | Path] | None = None,
                 environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Project:
    """Files loaded, merged, validated and typed: what `up`, the fixture and `config` use."""
    from pytest_isobox.compose.loading import load

    loaded = load(list(files) if files else None,
                  env_files=list(env_files) if env_files is not None else None,
                  environ=environ, cwd=cwd)
    source = ", ".join(str(f) for f in loaded.files)
    try:
        return build_project(loaded.document, loaded.project_dir, loaded.env,
                             name=project_name, profiles=profiles)
    except ComposeError as exc:
        raise ComposeError(f"{source}: {exc}") from None
