"""Go's text/template subset for --format: what Docker prints for the templates scripts use."""

from __future__ import annotations

import pytest

from pytest_isobox.gotemplate import TemplateError, parse, render_rows, tabwrite

DOC = {
    "Id": "abc123",
    "Name": "/web",
    "State": {"Status": "running", "Pid": 42, "Running": True, "ExitCode": 0},
    "Config": {"Labels": {"com.example.team": "qa", "b": "2"}, "Env": ["A=1", "B=2"],
               "Cmd": None},
    "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}},
    "Mounts": [],
    "Size": 1.5e9,
}


def render(source: str, data: object = DOC) -> str:
    return parse(source).render(data)


@pytest.mark.parametrize(("source", "expected"), [
    ("{{.State.Pid}}", "42"),
    ("{{.Name}} is {{.State.Status}}", "/web is running"),
    ("{{.}}", "map[a:1]"),
    ('{{index .Config.Labels "com.example.team"}}', "qa"),
    ("{{json .Config.Labels}}", '{"com.example.team":"qa","b":"2"}'),
    ("{{json .Config.Cmd}}", "null"),
    ("{{range .Config.Env}}[{{.}}]{{end}}", "[A=1][B=2]"),
    ("{{range $i, $e := .Config.Env}}{{$i}}={{$e}} {{end}}", "0=A=1 1=B=2 "),
    ("{{range $k, $v := .Config.Labels}}{{$k}}:{{$v}};{{end}}", "b:2;com.example.team:qa;"),
    ("{{range .Mounts}}x{{else}}none{{end}}", "none"),
    ("{{len .Config.Env}}", "2"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if eq .State.Status \"exited\"}}gone{{else if .State.Running}}up{{end}}", "up"),
    ("{{if not .Mounts}}empty{{end}}", "empty"),
    ("{{println .Id}}", "abc123\n"),
    ("{{upper .State.Status}}/{{lower \"AB\"}}", "RUNNING/ab"),
    ("{{join .Config.Env \",\"}}", "A=1,B=2"),
    ("{{.State.Status | upper}}", "RUNNING"),
    ("{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}", "8080"),
    ("{{range $p, $b := .NetworkSettings.Ports}}{{$p}}->{{(index $b 0).HostPort}}{{end}}",
     "80/tcp->8080"),
    ("{{.Missing}}", "<no value>"),
    ("{{.Config.Cmd}}", "<nil>"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Size}}", "1.5e+09"),
    ("{{printf \"%s-%d\" .State.Status .State.Pid}}", "running-42"),
    ("{{with .State}}{{.Pid}}{{end}}", "42"),
    ("{{$s := .State}}{{$s.Status}}", "running"),
    ("a  {{- .Id -}}  b", "aabc123b"),
    ("{{/* a comment */}}x", "x"),
    ("{{split \"a:b\" \":\"}}", "[a b]"),
])
def test_templates_render_as_docker_prints(source: str, expected: str) -> None:
    data = {"a": 1} if source == "{{.}}" else DOC
    assert render(source, data) == expected


@pytest.mark.parametrize(("source", "named"), [
    ("{{.Name", "unclosed action"),
    ("{{nosuchfunc .Name}}", 'function "nosuchfunc" not defined'),
    ("{{if .Name}}x", "no {{end}} for if"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{.Name }", "unclosed action"),
    ("{{index .Name}", "unclosed action"),
    ("{{.Name | }}", "missing value for command"),
    ("{{(.Name}}", "unclosed left paren"),
    ("{{.Name ]}}", "unexpected ']'"),
])
def test_bad_templates_are_one_line_naming_the_fault(source: str, named: str) -> None:
    with pytest.raises(TemplateError) as err:
        parse(source)
    assert named in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("source", "named"), [
    ("{{.State.Status.Deeper}}", "can't evaluate field Deeper in type string"),
    ("{{len .State.Pid}}", "len of type"),
    ("{{index .Config.Env 5}}", "index out of range: 5"),
    ("{{$nope}}", "undefined variable: $nope"),
    ("{{.Id 1}}", "can't give argument to non-function"),
])
def test_templates_that_do_not_fit_the_data_fail_in_one_line(source: str, named: str) -> None:
    with pytest.raises(TemplateError) as err:
        render(source)
    assert named in str(err.value)


def test_table_format_has_a_header_and_aligned_columns() -> None:
    rows = [{"ID": "abc", "Names": "web"}, {"ID": "abcdefghijklmn", "Names": "db"}]
    lines = render_rows("table {{.ID}}\\t{{.Names}}", rows, {"ID": "CONTAINER ID"})
    assert lines == ["CONTAINER ID     NAMES",
                     "abc              web",
                     "abcdefghijklmn   db"]
    assert render_rows("{{.ID}}", rows, {}) == ["abc", "abcdefghijklmn"]
    assert render_rows("json", rows[:1], {}) == ['{"ID":"abc","Names":"web"}']


def test_tabwriter_keeps_the_minimum_width() -> None:
    assert tabwrite(["a\tb", "cc\td"]) == ["a         b", "cc        d"]
