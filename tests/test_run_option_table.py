"""Every row of the run option table reaches every front end and both engines' documents:
the CLI's run and create flags, container() and isobox.run(), compose, the API server's
create body, the docker engine's create body and the native engine's inspect. A row that
one of them missed (a half-wired option) fails here by name. The last two tests create a
container with every row set on each real engine and read the inspect documents back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_isobox.engine import ContainerSpec
from pytest_isobox.engine.records import as_dict
from pytest_isobox.run_options_table import TABLE, RunOption
from tests.conftest import needs_docker, needs_root

ROWS = pytest.mark.parametrize("row", TABLE, ids=lambda row: row.field)


def value(row: RunOption) -> Any:
    """The example as a fixture keyword or a compose value gives it."""
    if row.example is None:
        return True
    return [row.example] if row.cli.get("action") == "append" else row.example


def expected(row: RunOption) -> Any:
    return row.parse(value(row))


def spec_with_every_row(image: str) -> ContainerSpec:
    spec = ContainerSpec(image=image, command=["true"], network_mode="none")
    for row in TABLE:
        setattr(spec, row.field, expected(row))
    return spec


def test_the_table_names_spec_fields_once_and_examples_differ_from_defaults() -> None:
    spec_fields = set(ContainerSpec._fields)
    names = [row.field for row in TABLE]
    assert len(names) == len(set(names))
    assert set(names) <= spec_fields
    flags = [flag for row in TABLE for flag in row.flags]
    assert len(flags) == len(set(flags))
    for row in TABLE:
        assert row.section in ("Config", "HostConfig"), row.api
        assert expected(row) != row.parse(row.default), row.field


@ROWS
@pytest.mark.parametrize("verb", ["run", "create"])
def test_cli_flag(row: RunOption, verb: str) -> None:
    from pytest_isobox.cli.arguments import parser
    from pytest_isobox.cli.run_options import _spec_from_args

    argv = [row.flags[-1]] if row.example is None else [row.flags[-1], row.example]
    args = parser(verb).parse_args([verb, *argv, "img"])
    assert getattr(_spec_from_args(args), row.field) == expected(row)
    default = parser(verb).parse_args([verb, "img"])
    assert getattr(_spec_from_args(default), row.field) == row.parse(row.default)


@ROWS
def test_fixture_keyword(row: RunOption) -> None:
    from pytest_isobox.plugin.container_options import ContainerOptions
    from pytest_isobox.plugin.fixtures import container

    options = ContainerOptions(image="img", **{row.field: value(row)})
    spec = options.to_spec(name="n", fixture="f", worker="w", base=Path("/"),
                           persistent=False)
    assert getattr(spec, row.field) == expected(row)
    container("img", **{row.field: value(row)})  # accepted, checked at declaration


def test_fixture_refuses_an_unknown_keyword() -> None:
    from pytest_isobox.plugin.fixtures import container

    with pytest.raises(TypeError, match="read_onyl"):
        container("img", read_onyl=True)


@ROWS
def test_compose_key(row: RunOption, tmp_path: Path) -> None:
    from pytest_isobox.compose.model import build_project, container_spec

    if row.compose is None:
        pytest.skip("no compose key")
    document = {"services": {"web": {"image": "img", row.compose: value(row)}}}
    project = build_project(document, tmp_path, {}, name="p")
    assert getattr(container_spec(project, project.services["web"]), row.field) == expected(row)


@ROWS
def test_server_create_body(row: RunOption) -> None:
    from pytest_isobox.server.translate import spec_from_create

    body: dict[str, Any] = {"Image": "img", "HostConfig": {}}
    section = body if row.section == "Config" else body["HostConfig"]
    section[row.key] = row.to_api(expected(row))
    assert getattr(spec_from_create(body, None), row.field) == expected(row)
    assert getattr(spec_from_create({"Image": "img"}, None), row.field) == \
        row.parse(row.default)


@ROWS
def test_docker_create_body(row: RunOption) -> None:
    from pytest_isobox.docker.containers import create_body

    spec = ContainerSpec(image="img")
    setattr(spec, row.field, expected(row))
    body = create_body(spec, {})
    section = body if row.section == "Config" else body["HostConfig"]
    assert section[row.key] == row.to_api(expected(row))
    plain = create_body(ContainerSpec(image="img"), {})
    assert (plain if row.section == "Config" else plain["HostConfig"]).get(row.key) != \
        section[row.key]


@ROWS
def test_native_inspect(row: RunOption) -> None:
    spec = ContainerSpec(image="img")
    setattr(spec, row.field, expected(row))
    stored = json.loads(json.dumps(as_dict(spec)))  # as config.json keeps it
    assert _native_section(row.section, stored)[row.key] == row.inspect(expected(row))
    plain = json.loads(json.dumps(as_dict(ContainerSpec(image="img"))))
    assert _native_section(row.section, plain)[row.key] == row.inspect(row.parse(row.default))


def _native_section(section: str, spec: dict) -> dict:
    from pytest_isobox.native import container_json

    if section == "HostConfig":
        return container_json._host_config(spec)
    config = {"env": {}, "hostname": "", "user": "", "workdir": "", "image": "img",
              "stop_signal": None}
    return container_json._config(config, spec, {})


def _table_fields(doc: dict) -> dict:
    return {row.api: (doc["Config"] if row.section == "Config" else doc["HostConfig"])
            .get(row.key) for row in TABLE}


@needs_root
def test_native_engine_shows_every_row(isobox_home: Path, busybox_rootfs: Path) -> None:
    from pytest_isobox.engine.registry import open_engine

    engine = open_engine("native", home=isobox_home)
    try:
        state = engine.create(spec_with_every_row(str(busybox_rootfs)))
        try:
            shown = _table_fields(engine.inspect(state.id))
        finally:
            engine.remove(state.id, force=True)
    finally:
        engine.close()
    assert shown == {row.api: row.inspect(expected(row)) for row in TABLE}


@needs_docker
def test_dockerd_shows_every_row(busybox_rootfs: Path) -> None:
    """What the docker engine sends, dockerd keeps: its inspect shows each row as the
    native engine's does."""
    from pytest_isobox.engine.registry import open_engine

    engine = open_engine("docker")
    ref = "isobox-test/run-option-table:latest"
    try:
        engine.import_rootfs(busybox_rootfs, ref)
        state = engine.create(spec_with_every_row(ref))
        try:
            shown = _table_fields(engine.inspect(state.id))
        finally:
            engine.remove(state.id, force=True)
            engine.remove_image(ref, force=True)
    finally:
        engine.close()
    assert shown == {row.api: row.inspect(expected(row)) for row in TABLE}
