"""Metadata instructions as Docker stores them in an image config (pure logic)."""

from __future__ import annotations

import pytest

from pytest_isobox.builder import instructions as ic
from pytest_isobox.engine import BuildError


def test_env_keeps_order_and_replaces() -> None:
    config = {"Env": ["PATH=/bin", "A=1"]}
    ic.set_env(config, [("A", "2"), ("B", "x y")])
    assert config["Env"] == ["PATH=/bin", "A=2", "B=x y"]


def test_expose_ports_protocols_and_ranges() -> None:
    config: dict = {}
    ic.expose(config, ["80", "53/udp", "8000-8001/TCP"])
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {},
                                      "8001/tcp": {}}
    with pytest.raises(BuildError, match="invalid port 'http'"):
        ic.expose(config, ["http"])


def test_healthcheck_durations_in_nanoseconds() -> None:
    config: dict = {}
    ic.healthcheck(config, {"interval": "5s", "timeout": "1m30s", "start-period": "500ms",
                            "retries": "3"}, ["CMD", "check --quiet"], False)
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "check --quiet"],
                                     "Interval": 5_000_000_000, "Timeout": 90_000_000_000,
                                     "StartPeriod": 500_000_000, "Retries": 3}
    ic.healthcheck(config, {}, ["CMD", "a", "b"], True)
    assert config["Healthcheck"] == {"Test": ["CMD", "a", "b"]}
    ic.healthcheck(config, {}, ["NONE"], False)
    assert config["Healthcheck"] == {"Test": ["NONE"]}
    with pytest.raises(BuildError, match="--interval='5x'"):
        ic.healthcheck(config, {"interval": "5x"}, ["CMD", "x"], False)


def test_command_forms_use_the_configured_shell() -> None:
    assert ic.command_form({}, ["echo hi"], False) == ["/bin/sh", "-c", "echo hi"]
    assert ic.command_form({"Shell": ["/bin/bash", "-xc"]}, ["echo"], False) == \
        ["/bin/bash", "-xc", "echo"]
    assert ic.command_form({}, ["a", "b"], True) == ["a", "b"]


def test_workdir_is_relative_to_the_previous_one() -> None:
    assert ic.working_dir({}, "app") == "/app"
    assert ic.working_dir({"WorkingDir": "/app"}, "src/../lib") == "/app/lib"
    assert ic.working_dir({"WorkingDir": "/app"}, "/abs") == "/abs"


@pytest.mark.parametrize("good", ["SIGTERM", "TERM", "9", "SIGRTMIN+3"])
def test_stop_signal_accepts(good: str) -> None:
    assert ic.stop_signal(good) == good


def test_stop_signal_rejects_nonsense() -> None:
    with pytest.raises(BuildError, match="invalid signal 'SIGNOPE'"):
        ic.stop_signal("SIGNOPE")
