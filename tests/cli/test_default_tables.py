"""Formats that only list fields (every default table, -q) are laid out by cli/output.py
without the template engine: the lines must be the template engine's, byte for byte."""

from __future__ import annotations

import pytest

from pytest_isobox.cli.output import render_table
from pytest_isobox.gotemplate import render_rows

HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Command": "COMMAND"}
ROWS = [{"ID": "abc", "Names": "a-long-name-here", "Command": '"sleep 3600"', "N": 3,
         "Label": lambda key: key},
        {"ID": "d\ne", "Names": "", "Command": '"sh"', "N": 4, "Label": lambda key: key},
        {"ID": "", "Names": "x", "Command": "", "N": 5, "Label": lambda key: key}]
FORMATS = ["table {{.ID}}\\t{{.Names}}\\t{{.Command}}", "table {{.ID}}\t{{.Names}}",
           "{{.ID}}", "{{.ID}}\\t{{.Names}}", "table{{.Names}}", "table", "  {{.ID}}",
           "table {{.Unknown}}\\t{{.ID}}", "{{.N}}", "table {{.N}}\\t{{.ID}}", "{{ .ID }}",
           "{{.ID}} {{.Names}}", "{{.ID}}\\n{{.Names}}", "json", "table {{.ID}}\\t"]


@pytest.mark.parametrize("source", FORMATS)
@pytest.mark.parametrize("rows", [ROWS, ROWS[:1], []])
def test_render_table_is_render_rows(source: str, rows: list[dict]) -> None:
    default = "table {{.ID}}\\t{{.Command}}"
    rows = [{k: v for k, v in r.items() if k != "Label" or source != "json"} for r in rows]
    assert render_table(source, rows, HEADERS, default) == render_rows(source, rows, HEADERS,
                                                                       default)
