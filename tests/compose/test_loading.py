"""Compose files read as compose reads them: interpolation, env files, merging several files,
`extends`, and the schema's one-line errors. Pure logic: no engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_isobox.compose import ComposeError
from pytest_isobox.compose.interpolation import read_env_file, substitute
from pytest_isobox.compose.loading import load

ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(("text", "expected"), [
    ("$SET ${SET}", "value value"),
    ("$$SET $$", "$SET $"),
    ("${UNSET:-d} ${EMPTY:-d} ${SET:-d}", "d d value"),
    ("${UNSET-d} [${EMPTY-d}]", "d []"),
    ("${UNSET:-${SET}x}", "valuex"),
    ("${SET:+alt} [${EMPTY:+alt}] ${EMPTY+alt}", "alt [] alt"),
    ("${UNSET}|$UNSET|", "||"),
    ("price: 5$", "price: 5$"),
])
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, ENV, "f: k") == expected


def test_required_variable_names_key_and_message() -> None:
    with pytest.raises(ComposeError, match=r"^f: services.web.image: required variable TAG: "
                                           r"set TAG$"):
        substitute("app:${TAG:?set TAG}", ENV, "f: services.web.image")
    with pytest.raises(ComposeError, match="required variable EMPTY"):
        substitute("${EMPTY:?}", ENV, "f: k")
    assert substitute("${EMPTY?}", ENV, "f: k") == ""


def test_invalid_format_is_one_line() -> None:
    with pytest.raises(ComposeError, match=r"^f: k: invalid interpolation format '\$\{SET'$"):
        substitute("${SET", ENV, "f: k")


def test_env_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# comment\nA=1\nexport B='two words'\nC=\"x\"\nD=v # note\n")
    assert read_env_file(env) == {"A": "1", "B": "two words", "C": "x", "D": "v"}
    env.write_text("A=1\nnot a pair\n")
    with pytest.raises(ComposeError, match=r"\.env:2: expected KEY=VALUE"):
        read_env_file(env)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_dotenv_then_process_environment(tmp_path: Path) -> None:
    _write(tmp_path, ".env", "TAG=fromdotenv\nPORT=8000\n")
    _write(tmp_path, "compose.yaml",
           "services:\n  web:\n    image: app:${TAG}\n    ports: ['${PORT}:80']\n")
    loaded = load(cwd=tmp_path, environ={"TAG": "fromenv"})
    web = loaded.document["services"]["web"]
    assert web["image"] == "app:fromenv"
    assert web["ports"] == ["8000:80"]
    _write(tmp_path, "test.env", "TAG=given\n")
    loaded = load(cwd=tmp_path, env_files=["test.env"], environ={})
    assert loaded.document["services"]["web"]["image"] == "app:given"
    assert loaded.document["services"]["web"]["ports"] == [":80"]


def test_several_files_merge_as_compose_does(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", """
services:
  web:
    image: app
    command: [serve, --port, "80"]
    environment: [A=1, B=2]
    ports: ["8080:80"]
    volumes: [data:/data, ./conf:/conf]
    expose: ["80"]
    healthcheck: {test: [CMD, "true"], interval: 1s}
    depends_on: [db]
volumes: {data: {}}
""")
    _write(tmp_path, "b.yml", """
services:
  web:
    command: [serve]
    environment: {B: "3", C: "4"}
    ports: ["8080:80", "9090:90"]
    volumes: [other:/data]
    expose: ["81"]
    healthcheck: {test: [CMD, "false"]}
    depends_on: {cache: {condition: service_healthy}}
  db: {image: db}
""")
    doc = load(["a.yml", "b.yml"], cwd=tmp_path, environ={}).document
    web = doc["services"]["web"]
    assert web["command"] == ["serve"]
    assert web["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert web["ports"] == ["8080:80", "9090:90"]
    assert web["volumes"] == ["other:/data", "./conf:/conf"]
    assert web["expose"] == ["80", "81"]
    assert web["healthcheck"] == {"test": ["CMD", "false"], "interval": "1s"}
    assert web["depends_on"] == {"db": {"condition": "service_started"},
                                 "cache": {"condition": "service_healthy"}}
    assert doc["services"]["db"] == {"image": "db"}
    assert doc["volumes"] == {"data": {}}


def test_extends_in_the_same_file_and_another(tmp_path: Path) -> None:
    _write(tmp_path, "common.yml", """
services:
  base:
    image: app
    environment: {LEVEL: base, KEEP: "1"}
    ports: ["80"]
""")
    _write(tmp_path, "compose.yaml", """
services:
  web:
    extends: {file: common.yml, service: base}
    environment: {LEVEL: web}
  worker:
    extends: {service: web}
    command: [work]
""")
    services = load(cwd=tmp_path, environ={}).document["services"]
    assert services["web"] == {"image": "app", "environment": {"LEVEL": "web", "KEEP": "1"},
                               "ports": ["80"]}
    assert services["worker"]["command"] == ["work"]
    assert services["worker"]["environment"] == {"LEVEL": "web", "KEEP": "1"}
    assert "extends" not in services["worker"]


def test_extends_of_a_missing_service(tmp_path: Path) -> None:
    _write(tmp_path, "compose.yaml", "services:\n  web:\n    extends: {service: nope}\n")
    with pytest.raises(ComposeError, match=r"compose.yaml: services.web.extends: no service "
                                           r"'nope'"):
        load(cwd=tmp_path, environ={})


@pytest.mark.parametrize(("text", "message"), [
    ("services:\n  web:\n    image: x\n    prots: ['80']\n",
     r"compose.yaml: services.web.prots: unknown key \(not in the compose-spec\)$"),
    ("services:\n  web:\n    image: x\n    ports: 80\n",
     r"compose.yaml: services.web.ports: 80 is not of type 'array'$"),
    ("services:\n  web:\n    image: x\n    healthcheck: {interval: 3}\n",
     r"compose.yaml: services.web.healthcheck.interval: 3 is not of type 'string'$"),
    ("services:\n  web:\n    image: [x\n",
     r"compose.yaml:4: invalid YAML: "),
    ("- a\n- b\n", r"compose.yaml: top level must be a mapping, got list$"),
])
def test_broken_files_give_one_line(tmp_path: Path, text: str, message: str) -> None:
    _write(tmp_path, "compose.yaml", text)
    with pytest.raises(ComposeError, match=message) as info:
        load(cwd=tmp_path, environ={})
    assert "\n" not in str(info.value)


def test_reset_and_override_tags_in_a_later_file(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", """
services:
  web:
    image: app:${TAG:-1}
    ports: ["8080:80", "9090:90"]
    environment: {A: "1", B: "2"}
    command: [serve]
    healthcheck: {test: [CMD, "true"], interval: 1s}
    depends_on: [db]
  db: {image: db}
""")
    _write(tmp_path, "b.yml", """
services:
  web:
    ports: !reset []
    environment: !override ["ONLY=${TAG:-x}"]
    command: !reset null
    healthcheck: !override {test: [CMD, probe]}
    depends_on: !reset
    expose: !override ["81"]
""")
    web = load(["a.yml", "b.yml"], cwd=tmp_path, environ={"TAG": "7"}).document["services"]["web"]
    assert web == {"image": "app:7", "environment": {"ONLY": "7"},
                   "healthcheck": {"test": ["CMD", "probe"]}, "expose": ["81"]}


def test_tags_in_a_single_file_are_plain_values(tmp_path: Path) -> None:
    _write(tmp_path, "compose.yaml", "services:\n  web:\n    image: app\n"
                                     "    ports: !override ['80']\n    command: !reset [x]\n")
    assert load(cwd=tmp_path, environ={}).document["services"]["web"] == {
        "image": "app", "ports": ["80"]}


@pytest.mark.parametrize(("text", "message"), [
    ("services:\n  web: {image: x}\nconfigs: {c: {file: ./c}}\n", r"configs"),
    ("services:\n  web: {image: x}\nsecrets: {s: {file: ./s}}\n", r"secrets"),
    ("include: [other.yml]\nservices:\n  web: {image: x}\n", r"include"),
    ("services:\n  web: {image: x, secrets: [s]}\n", r"services.web.secrets"),
    ("services:\n  web: {image: x, configs: [c]}\n", r"services.web.configs"),
    ("services:\n  web: {image: x, links: [db]}\n", r"services.web.links"),
    ("services:\n  web: {image: x, deploy: {replicas: 2}}\n", r"services.web.deploy.replicas"),
    ("services:\n  web: {image: x, healthcheck: {start_interval: 1s}}\n",
     r"services.web.healthcheck.start_interval"),
    ("services:\n  web: {image: x}\nnetworks: {n: {ipam: {}}}\n", r"networks.n.ipam"),
])
def test_unsupported_keys_name_the_file_they_are_in(tmp_path: Path, text: str,
                                                     message: str) -> None:
    _write(tmp_path, "a.yml", "services:\n  web: {image: x}\n")
    _write(tmp_path, "b.yml", text)
    with pytest.raises(ComposeError) as info:
        load(["a.yml", "b.yml"], cwd=tmp_path, environ={})
    assert str(info.value) == f"{tmp_path}/b.yml: {message}: not supported by isobox compose"
