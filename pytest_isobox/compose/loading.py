"""Compose files read (PyYAML's safe_load), interpolated, validated, `extends` resolved, and
several files merged as compose merges them (compose-spec 13-merge.md): mappings merged key by
key, sequences appended, `command`/`entrypoint`/`healthcheck.test` replaced, `ports` and
`volumes` unique (by the published port, by the target), list forms of `environment`,
`labels`, `depends_on`, `networks` turned into mappings first so that they merge; a later
file's `!reset` and `!override` (tags.py) drop or replace the earlier value.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_isobox.compose import ComposeError, tags
from pytest_isobox.compose.interpolation import interpolate, read_env_file

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
_REPLACED = {"command", "entrypoint"}


@dataclass
class Loaded:
    """The merged document and what it was made from."""

    document: dict[str, Any]
    files: list[Path]
    project_dir: Path
    env: dict[str, str]


def read_yaml(path: Path) -> dict[str, Any]:
    """One file as a mapping; a YAML error is one line with the file and line."""
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ComposeError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        document = yaml.load(text, Loader=_loader())  # SafeLoader and two tags
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ComposeError(f"{path}{line}: invalid YAML: {problem}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ComposeError(f"{path}: top level must be a mapping, got {type(document).__name__}")
    return document


@functools.cache
def _loader() -> type:
    return tags.loader()


def _as_mapping(value: Any, *, list_value: Any) -> Any:
    """`[A=1, B]` -> `{A: "1", B: None}` (environment, labels); `[a, b]` -> `{a: list_value}`."""
    if not isinstance(value, list):
        return value
    out: dict[str, Any] = {}
    for item in value:
        text = str(item)
        if list_value == "split":
            key, sep, val = text.partition("=")
            out[key] = val if sep else None
        else:
            out[text] = dict(list_value) if isinstance(list_value, dict) else list_value
    return out


def normalise_service(service: dict[str, Any]) -> dict[str, Any]:
    """The list forms of mergeable keys as mappings (compose's own normalisation)."""
    service = dict(service)
    forms = {"environment": "split", "labels": "split", "networks": None,
             "depends_on": {"condition": "service_started"}}
    for key, list_value in forms.items():
        if key in service:
            service[key] = tags.inside(service[key],
                                       lambda v, lv=list_value: _as_mapping(v, list_value=lv))
    if "build" in service:
        service["build"] = tags.inside(service["build"], _normalise_build)
    return service


def _normalise_build(build: Any) -> Any:
    if isinstance(build, str):
        return {"context": build}
    if isinstance(build, dict) and "args" in build:
        build = dict(build)
        build["args"] = tags.inside(build["args"],
                                    lambda v: _as_mapping(v, list_value="split"))
    return build


def _port_key(item: Any) -> Any:
    if isinstance(item, Mapping):
        return (item.get("host_ip"), str(item.get("target")), str(item.get("published")),
                item.get("protocol", "tcp"))
    return str(item)


def _volume_key(item: Any) -> Any:
    if isinstance(item, Mapping):
        return item.get("target")
    parts = str(item).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _merge_unique(base: list[Any], override: list[Any], key: Any) -> list[Any]:
    merged = {key(item): item for item in base}
    for item in override:
        merged[key(item)] = item
    return list(merged.values())


def merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """One service of a later file over the same service of an earlier one."""
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(value, tags.Reset):
            out.pop(key, None)
        elif isinstance(value, tags.Override):
            out[key] = tags.unwrap(value)
        elif key in _REPLACED or old is None or value is None:
            out[key] = value
        elif key == "ports" and isinstance(old, list) and isinstance(value, list):
            out[key] = _merge_unique(old, value, _port_key)
        elif key == "volumes" and isinstance(old, list) and isinstance(value, list):
            out[key] = _merge_unique(old, value, _volume_key)
        elif key == "healthcheck" and isinstance(old, dict) and isinstance(value, dict):
            out[key] = {**old, **value}
        else:
            out[key] = merge_values(old, value)
    return out


def merge_values(base: Any, override: Any) -> Any:
    """Mappings merged recursively, sequences appended, anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if isinstance(value, tags.Reset):
                out.pop(key, None)
            elif isinstance(value, tags.Override):
                out[key] = tags.unwrap(value)
            else:
                out[key] = merge_values(out[key], value) if key in out else value
        return out
    if isinstance(base, list) and isinstance(override, list):
        return base + [item for item in override if item not in base]
    return override


def merge_documents(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A later file over an earlier one; services by the service rules, the rest as mappings."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, tags.Reset):
            out.pop(key, None)
        elif isinstance(value, tags.Override):
            out[key] = tags.unwrap(value)
        elif key == "services" and isinstance(value, dict):
            services = dict(out.get("services") or {})
            for name, service in value.items():
                service = normalise_service(service or {})
                services[name] = (merge_service(services[name], service)
                                  if name in services else service)
            out["services"] = services
        elif key in out and out[key] is not None:
            out[key] = merge_values(out[key], value)
        else:
            out[key] = value
    return out


def _read_file(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    from pytest_isobox.compose import schema
    from pytest_isobox.compose.model import refuse_keys

    document = interpolate(read_yaml(path), env, "")
    plain = tags.unwrap(document)  # what this file says by itself
    schema.validate(plain, str(path))
    refuse_keys(plain, str(path))
    services = document.get("services") or {}
    document["services"] = {name: normalise_service(service or {})
                            for name, service in services.items()}
    return document


def resolve_extends(document: dict[str, Any], path: Path, env: Mapping[str, str],
                    seen: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """Each service's `extends: {service, file}` replaced by the base merged under it."""
    services = document.get("services") or {}
    resolved: dict[str, Any] = {}

    def resolve(name: str, chain: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        if name in resolved:
            return resolved[name]
        service = dict(services[name])
        extends = service.pop("extends", None)
        if extends is None:
            resolved[name] = service
            return service
        if isinstance(extends, str):
            extends = {"service": extends}
        base_name = extends["service"]
        marker = (str(path), name)
        if marker in chain:
            raise ComposeError(f"{path}: services.{name}.extends: circular reference")
        if "file" in extends:
            other = (path.parent / extends["file"]).resolve()
            other_doc = resolve_extends(_read_file(other, env), other, env, chain + (marker,))
            base_services = other_doc.get("services") or {}
            where = other
        else:
            base_services, where = services, path
        if base_name not in base_services:
            raise ComposeError(f"{path}: services.{name}.extends: no service {base_name!r} "
                               f"in {where}")
        if where == path:
            base = resolve(base_name, chain + (marker,))
        else:
            base = base_services[base_name]
        base = tags.unwrap(base)
        base = {k: v for k, v in base.items() if k not in ("depends_on",)} \
            if where != path else dict(base)
        resolved[name] = merge_service(base, service)
        return resolved[name]

    document = dict(document)
    document["services"] = {name: resolve(name, seen) for name in services}
    return document


def project_env(project_dir: Path, env_files: Sequence[Path] | None,
                environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables for interpolation: the env files (default `.env` in the project directory,
    when there is one), then the process environment over them."""
    values: dict[str, str] = {}
    if env_files is None:
        default = project_dir / ".env"
        env_files = [default] if default.is_file() else []
    for env_file in env_files:
        if not Path(env_file).is_file():
            raise ComposeError(f"{env_file}: env file not found")
        values.update(read_env_file(Path(env_file)))
    values.update(os.environ if environ is None else environ)
    return values


def find_default_file(directory: Path) -> Path:
    for name in DEFAULT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise ComposeError(f"{directory}: no compose file (looked for {', '.join(DEFAULT_FILES)})")


def load(files: Sequence[str | Path] | None = None, *, env_files: Sequence[str | Path] | None = None,
         environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Loaded:
    """The files (default: compose.yaml & co. in cwd) merged into one document."""
    cwd = cwd or Path.cwd()
    paths = [(cwd / f).resolve() for f in files] if files else [find_default_file(cwd)]
    project_dir = paths[0].parent
    env = project_env(project_dir, [cwd / e for e in env_files] if env_files is not None
                      else None, environ)
    merged: dict[str, Any] = {}
    for path in paths:
        document = resolve_extends(_read_file(path, env), path, env)
        merged = tags.unwrap(merge_documents(merged, document))
    merged.setdefault("services", {})
    return Loaded(document=merged, files=paths, project_dir=project_dir, env=env)
