"""`"{fixture}"` references: found for collection, rendered at setup, literal text untouched."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_isobox.plugin.templating import TemplateError, references, render


def test_references_are_found_in_nested_values():
    value = {"image": "{db_image}", "env": {"DB": "{db.name}:{db.ips[app_net]}"},
             "ports": ["{port}", 8000], "name": "web-{worker_id}"}
    assert references(value) == {"db_image", "db", "port"}


@pytest.mark.parametrize("text", [
    "sh -c 'echo ${HOME}'", "awk '{print $1}'", '{"a": 1}', "{{literal}}", "{1abc}", "{}",
])
def test_literal_braces_are_not_references(text):
    assert references(text) == set()
    assert render(text, {}) == text.replace("{{", "{").replace("}}", "}")


def test_render_follows_attributes_and_keys():
    db = SimpleNamespace(name="isobox-db-gw0", ips={"app_net": "10.0.0.2"})
    out = render({"DB": "{db.name}", "IP": "{db.ips[app_net]}", "n": "x-{worker_id}", "k": 3},
                 {"db": db, "worker_id": "gw1"})
    assert out == {"DB": "isobox-db-gw0", "IP": "10.0.0.2", "n": "x-gw1", "k": 3}


def test_render_keeps_container_types():
    assert render(("{a}", ["{a}"]), {"a": 1}) == ("1", ["1"])


def test_missing_attribute_names_reference_and_fixture():
    with pytest.raises(TemplateError, match=r"\{db\.nope\}.*fixture 'db'.*'\.nope'"):
        render("{db.nope}", {"db": SimpleNamespace()})


def test_unrequested_fixture_is_named():
    with pytest.raises(TemplateError, match="no fixture 'other'"):
        render("{other}", {})
