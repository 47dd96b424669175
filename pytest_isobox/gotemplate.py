"""The subset of Go's text/template that Docker's `--format`/`-f` is written in.

Scripts written for Docker pass `{{.State.Pid}}`, `{{index .Config.Labels "k"}}`,
`{{json .Mounts}}`, `{{range .Names}}...{{end}}` to `inspect -f` and `ps --format`; this module
parses and runs those templates over the JSON-shaped documents (dicts, lists, strings, numbers)
the CLI builds, printing values as Go's fmt does (`map[k:v]`, `[a b]`, `<no value>`, `<nil>`).

Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming and `{{/* comments */}}`; fields
(`.A.B`, `$`, `$x.A`), literals, parentheses, pipelines (`|`), variables (`$x := ...`),
`if`/`else if`/`else`, `range` (with `$i, $v :=` and `else`), `with`, and the functions Docker
offers: index, len, json, print, printf, println, upper, lower, title, join, split, pad,
truncate, slice, eq, ne, lt, le, gt, ge, and, or, not. `render_rows` adds Docker's `table`
prefix (a header row, columns aligned as Go's tabwriter does) and the bare `json` format.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from pytest_isobox.tabwriter import tabwrite  # (its home; kept importable from here)


class TemplateError(ValueError):
    """A template that does not parse or cannot be run over its data; one line."""


class _NoValue:
    """A map's missing key: Go prints it as `<no value>` and it is false."""

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()


# --------------------------------------------------------------------------- lexing

@dataclass
class _Tok:
    kind: str  # field, var, ident, str, num, bool, nil, pipe, lparen, rparen, assign, comma
    value: object
    adjacent: bool  # no space before it (a `.Field` right after `)` chains on the parenthesis)


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)+')
  | (?P<num>[-+]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][-+]?\d+)?))
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<assign>:=|=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
""", re.VERBOSE)


def _tokens(text: str, line: int) -> list[_Tok]:
    out: list[_Tok] = []
    pos, adjacent = 0, False
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise TemplateError(f"template: :{line}: unexpected {text[pos]!r} in command")
        kind, value = m.lastgroup, m.group()
        pos = m.end()
        if kind == "space":
            adjacent = False
            continue
        if kind == "str":
            try:
                value = json.loads(value)
            except ValueError:
                raise TemplateError(f"template: :{line}: bad string {value}") from None
            kind = "str"
        elif kind == "raw":
            kind, value = "str", value[1:-1]
        elif kind == "char":
            kind, value = "num", ord(json.loads('"' + value[1:-1] + '"'))
        elif kind == "num":
            value = _number(value, line)
        elif kind == "field":
            value = [] if value == "." else value[1:].split(".")
        elif kind == "var":
            name, *names = value.split(".")
            value = (name, names)
        elif kind == "ident" and value in ("true", "false"):
            kind, value = "bool", value == "true"
        elif kind == "ident" and value == "nil":
            kind, value = "nil", None
        out.append(_Tok(kind, value, adjacent))
        adjacent = True
    return out


def _number(text: str, line: int) -> int | float:
    clean = text.replace("_", "")
    try:
        return int(clean, 0)
    except ValueError:
        pass
    try:
        return float(clean)
    except ValueError:
        raise TemplateError(f"template: :{line}: bad number syntax: {text!r}") from None


# --------------------------------------------------------------------------- the tree

@dataclass
class _Pipe:
    decls: list[str]
    commands: list[list]  # each command: a list of operands
    line: int
    text: str


@dataclass
class _Field:
    names: list[str]


@dataclass
class _Var:
    name: str
    names: list[str]


@dataclass
class _Func:
    name: str


@dataclass
class _Lit:
    value: object


@dataclass
class _Sub:  # a parenthesised pipeline, maybe followed by .Fields
    pipe: _Pipe
    names: list[str]


@dataclass
class _Action:
    pipe: _Pipe


@dataclass
class _Block:  # if, range, with
    kind: str
    pipe: _Pipe
    body: list = field(default_factory=list)
    otherwise: list = field(default_factory=list)


FUNCTIONS: dict[str, Callable] = {}


def _first_word(text: str) -> tuple[str, str]:
    parts = text.strip().split(None, 1)
    return (parts[0], parts[1].strip()) if len(parts) == 2 else (text.strip(), "")


class _Parser:
    _ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)

    def __init__(self, source: str) -> None:
        self.items: list[tuple[str, object, int]] = []  # (text|action, content, line)
        pos, trim_next = 0, False
        for m in self._ACTION.finditer(source):
            text = source[pos:m.start()]
            if trim_next:
                text = text.lstrip()
            if m.group(1):
                text = text.rstrip()
            line = source.count("\n", 0, m.start()) + 1
            if text:
                self.items.append(("text", text, line))
            inner = m.group(2).strip()
            if not (inner.startswith("/*") and inner.endswith("*/")):
                self.items.append(("action", inner, line))
            trim_next = bool(m.group(3))
            pos = m.end()
        rest = source[pos:]
        if "{{" in rest:
            line = source.count("\n", 0, pos + rest.index("{{")) + 1
            raise TemplateError(f"template: :{line}: unclosed action")
        if trim_next:
            rest = rest.lstrip()
        if rest:
            self.items.append(("text", rest, source.count("\n", 0, pos) + 1))
        self.at = 0

    def parse(self) -> list:
        nodes, stop = self._list()
        if stop is not None:
            raise TemplateError(f"template: :{stop[1]}: unexpected {{{{{stop[0]}}}}}")
        return nodes

    def _list(self) -> tuple[list, tuple[str, int] | None]:
        """Nodes up to an {{end}} or {{else...}}, which is returned (without consuming body)."""
        nodes: list = []
        while self.at < len(self.items):
            kind, content, line = self.items[self.at]
            self.at += 1
            if kind == "text":
                nodes.append(content)
                continue
            word, rest = _first_word(str(content))
            if word in ("end", "else"):
                return nodes, (str(content), line)
            if word in ("if", "range", "with"):
                nodes.append(self._block(word, rest.strip(), line))
            elif word in ("define", "template", "block", "break", "continue"):
                raise TemplateError(f"template: :{line}: {word} is not supported")
            elif not content:
                raise TemplateError(f"template: :{line}: missing value for command")
            else:
                nodes.append(_Action(self._pipe(str(content), line)))
        return nodes, None

    def _block(self, kind: str, text: str, line: int) -> _Block:
        if not text:
            raise TemplateError(f"template: :{line}: missing value for {kind}")
        block = _Block(kind, self._pipe(text, line))
        block.body, stop = self._list()
        if stop is None:
            raise TemplateError(f"template: :{line}: unexpected EOF (no {{{{end}}}} for {kind})")
        word, rest = _first_word(stop[0])
        if word == "else":
            then, more = _first_word(rest)
            if then == "if" and kind == "if":
                # {{else if x}} ... {{end}}: one {{end}} closes the chain
                nested = self._block("if", more, stop[1])
                block.otherwise = [nested]
                return block
            if rest:
                raise TemplateError(f"template: :{stop[1]}: unexpected {rest!r} after else")
            block.otherwise, stop = self._list()
            if stop is None or stop[0] != "end":
                raise TemplateError(f"template: :{line}: expected {{{{end}}}} for {kind}")
        elif stop[0] != "end":
            raise TemplateError(f"template: :{stop[1]}: unexpected {stop[0]!r}")
        return block

    def _pipe(self, text: str, line: int) -> _Pipe:
        toks = _tokens(text, line)
        decls: list[str] = []
        # `$x := pipeline` or `$i, $v := pipeline`
        if len(toks) >= 2 and toks[0].kind == "var" and not toks[0].value[1]:
            if toks[1].kind == "assign":
                decls, toks = [toks[0].value[0]], toks[2:]
            elif (toks[1].kind == "comma" and len(toks) >= 4 and toks[2].kind == "var"
                  and toks[3].kind == "assign"):
                decls, toks = [toks[0].value[0], toks[2].value[0]], toks[4:]
        pipe, rest = self._commands(toks, line, text)
        if rest:
            raise TemplateError(f"template: :{line}: unexpected {rest[0].value!r} in operand")
        pipe.decls = decls
        return pipe

    def _commands(self, toks: list[_Tok], line: int, text: str) -> tuple[_Pipe, list[_Tok]]:
        commands: list[list] = []
        current: list = []
        while toks:
            tok = toks[0]
            if tok.kind == "rparen":
                break
            toks = toks[1:]
            if tok.kind == "pipe":
                if not current:
                    raise TemplateError(f"template: :{line}: missing command before |")
                commands.append(current)
                current = []
                continue
            if tok.kind == "lparen":
                inner, toks = self._commands(toks, line, text)
                if not toks or toks[0].kind != "rparen":
                    raise TemplateError(f"template: :{line}: unclosed left paren")
                toks = toks[1:]
                names: list[str] = []
                while toks and toks[0].kind == "field" and toks[0].adjacent and toks[0].value:
                    names += toks[0].value
                    toks = toks[1:]
                current.append(_Sub(inner, names))
            elif tok.kind == "field":
                current.append(_Field(tok.value))
            elif tok.kind == "var":
                current.append(_Var(*tok.value))
            elif tok.kind == "ident":
                if tok.value not in FUNCTIONS:
                    raise TemplateError(f'template: :{line}: function "{tok.value}" not defined')
                current.append(_Func(tok.value))
            elif tok.kind in ("str", "num", "bool", "nil"):
                current.append(_Lit(tok.value))
            else:
                raise TemplateError(f"template: :{line}: unexpected {tok.value!r} in operand")
        if not current:
            raise TemplateError(f"template: :{line}: missing value for command")
        commands.append(current)
        return _Pipe([], commands, line, text), toks


# --------------------------------------------------------------------------- running

class _Run:
    def __init__(self, out: list[str]) -> None:
        self.out = out
        self.scopes: list[dict[str, object]] = []

    def nodes(self, nodes: list, dot: object) -> None:
        for node in nodes:
            if isinstance(node, str):
                self.out.append(node)
            elif isinstance(node, _Action):
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decls:
                    self.out.append(go_str(value))
            else:
                self.block(node, dot)

    def block(self, node: _Block, dot: object) -> None:
        self.scopes.append({})
        try:
            if node.kind == "range":
                self.range(node, dot)
                return
            value = self.pipe(node.pipe, dot)
            if truth(value):
                self.nodes(node.body, value if node.kind == "with" else dot)
            else:
                self.nodes(node.otherwise, dot)
        finally:
            self.scopes.pop()

    def range(self, node: _Block, dot: object) -> None:
        decls, node.pipe.decls = node.pipe.decls, []
        try:
            value = self.pipe(node.pipe, dot)
        finally:
            node.pipe.decls = decls
        if isinstance(value, Mapping):
            pairs: Iterable = ((k, value[k]) for k in sorted(value))
        elif isinstance(value, (list, tuple)):
            pairs = enumerate(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            pairs = ((i, i) for i in range(value))
        elif value is None or value is NO_VALUE:
            pairs = ()
        else:
            raise self.fail(node.pipe, f"range can't iterate over {go_str(value)}")
        empty = True
        for key, item in pairs:
            empty = False
            if len(decls) == 2:
                self.scopes[-1][decls[0]], self.scopes[-1][decls[1]] = key, item
            elif decls:
                self.scopes[-1][decls[0]] = item
            self.nodes(node.body, item)
        if empty:
            self.nodes(node.otherwise, dot)

    def fail(self, pipe: _Pipe, why: str) -> TemplateError:
        return TemplateError(f'template: :{pipe.line}: executing at <{pipe.text}>: {why}')

    def pipe(self, pipe: _Pipe, dot: object) -> object:
        value: object = _MISSING
        for command in pipe.commands:
            value = self.command(pipe, command, dot, value)
        for name in pipe.decls:
            (self.scopes[-1] if self.scopes else self.root_scope)[name] = value
        return value

    root_scope: dict[str, object]

    def command(self, pipe: _Pipe, command: list, dot: object, piped: object) -> object:
        head, *rest = command
        if isinstance(head, _Func):
            args = [self.operand(pipe, a, dot) for a in rest]
            if piped is not _MISSING:
                args.append(piped)
            try:
                return FUNCTIONS[head.name](*args)
            except TemplateError:
                raise
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                raise self.fail(pipe, f"error calling {head.name}: {exc}") from None
        value = self.operand(pipe, head, dot)
        if rest or piped is not _MISSING:
            if not callable(value):
                raise self.fail(pipe, f"can't give argument to non-function {go_str(value)}")
            args = [self.operand(pipe, a, dot) for a in rest]
            if piped is not _MISSING:
                args.append(piped)
            return value(*args)
        return value() if callable(value) else value

    def operand(self, pipe: _Pipe, op: object, dot: object) -> object:
        if isinstance(op, _Lit):
            return op.value
        if isinstance(op, _Field):
            return self.fields(pipe, dot, op.names)
        if isinstance(op, _Var):
            return self.fields(pipe, self.variable(pipe, op.name), op.names)
        if isinstance(op, _Sub):
            return self.fields(pipe, self.pipe(op.pipe, dot), op.names)
        if isinstance(op, _Func):
            return FUNCTIONS[op.name]()
        raise self.fail(pipe, f"bad operand {op!r}")

    def variable(self, pipe: _Pipe, name: str) -> object:
        for scope in reversed([self.root_scope, *self.scopes]):
            if name in scope:
                return scope[name]
        raise self.fail(pipe, f"undefined variable: {name}")

    def fields(self, pipe: _Pipe, value: object, names: Sequence[str]) -> object:
        for name in names:
            if callable(value) and not isinstance(value, Mapping):
                value = value()
            if isinstance(value, Mapping):
                value = value.get(name, NO_VALUE)
            elif value is None or value is NO_VALUE:
                raise self.fail(pipe, f"nil pointer evaluating interface {{}}.{name}")
            else:
                raise self.fail(pipe, f"can't evaluate field {name} in type {_go_type(value)}")
        return value


_MISSING = object()


@dataclass
class Template:
    """A parsed template; `render(data)` runs it (TemplateError when the data do not fit)."""

    source: str
    nodes: list

    def render(self, data: object) -> str:
        out: list[str] = []
        run = _Run(out)
        run.root_scope = {"$": data}
        run.nodes(self.nodes, data)
        return "".join(out)


def parse(source: str) -> Template:
    """Parse Go template text; TemplateError (one line, Go's wording) when it is not one."""
    return Template(source, _Parser(source).parse())


# --------------------------------------------------------------------------- Go's printing

def go_str(value: object) -> str:
    """A value as Go's fmt prints it with %v."""
    if value is _MISSING or value is NO_VALUE:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(value[k])}"
                                 for k in sorted(value, key=str)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def _go_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64): shortest digits, exponent from 1e6 or below 1e-4."""
    if math.isnan(f):
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "0"
    sign, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exp)  # digits before the decimal point
    e = point - 1
    head = "-" if sign else ""
    if e < -4 or e >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{head}{mantissa}e{'+' if e >= 0 else '-'}{abs(e):02d}"
    if point <= 0:
        return f"{head}0.{'0' * -point}{text}"
    if point >= len(text):
        return head + text + "0" * (point - len(text))
    return f"{head}{text[:point]}.{text[point:]}"


def _go_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "float64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    return type(value).__name__


def truth(value: object) -> bool:
    """Go's template truth: false, 0, nil, empty strings, lists and maps are false."""
    if value is NO_VALUE or value is _MISSING or value is None:
        return False
    return bool(value)


def to_json(value: object) -> str:
    """Docker's `json` function: encoding/json without HTML escaping, no spaces."""
    if value is NO_VALUE:
        return "null"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


# --------------------------------------------------------------------------- functions

def _index(item: object, *keys: object) -> object:
    for key in keys:
        if isinstance(item, Mapping):
            item = item.get(key, NO_VALUE)
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"cannot index slice/array with type {_go_type(key)}")
            if not 0 <= key < len(item):
                raise TemplateError(f"index out of range: {key}")
            item = item[key]
        elif item is None or item is NO_VALUE:
            raise TemplateError("index of untyped nil")
        else:
            raise TemplateError(f"can't index item of type {_go_type(item)}")
    return item


def _len(item: object) -> int:
    if isinstance(item, (Mapping, list, tuple, str)):
        return len(item)
    raise TemplateError(f"len of type {_go_type(item)}")


def _print(*args: object) -> str:
    # Go's Sprint: a space between operands when neither is a string
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_str(arg)
    return out


def _printf(fmt: str, *args: object) -> str:
    values = list(args)

    def one(m: re.Match) -> str:
        flags, verb = m.group(1), m.group(2)
        if verb == "%":
            return "%"
        if not values:
            return f"%!{verb}(MISSING)"
        v = values.pop(0)
        if verb in "vs":
            text = go_str(v)
        elif verb == "d" and isinstance(v, (int, float)):
            text = str(int(v))
        elif verb == "q":
            text = json.dumps(go_str(v), ensure_ascii=False)
        elif verb == "t":
            text = go_str(bool(v))
        elif verb in "xX" and isinstance(v, int):
            text = format(v, verb)
        elif verb == "f" and isinstance(v, (int, float)):
            prec = re.search(r"\.(\d+)", flags)
            text = f"{v:.{prec.group(1) if prec else 6}f}"
            flags = re.sub(r"\.\d+", "", flags)
        else:
            text = go_str(v)
        width = re.search(r"\d+", flags)
        if width:
            n = int(width.group())
            text = text.ljust(n) if "-" in flags else text.rjust(n)
        return text

    return re.sub(r"%([-+# 0]*\d*(?:\.\d+)?)([a-zA-Z%])", one, fmt)


def _compare(op: Callable[[object, object], bool]) -> Callable[[object, object], bool]:
    def compare(a: object, b: object) -> bool:
        try:
            return op(a, b)
        except TypeError:
            raise TemplateError(f"incompatible types for comparison: {go_str(a)} and "
                                f"{go_str(b)}") from None
    return compare


def _and(*args: object) -> object:
    for arg in args:
        if not truth(arg):
            return arg
    return args[-1]


def _or(*args: object) -> object:
    for arg in args:
        if truth(arg):
            return arg
    return args[-1]


def _slice(item: object, *bounds: int) -> object:
    if not isinstance(item, (str, list, tuple)):
        raise TemplateError(f"can't slice item of type {_go_type(item)}")
    return item[slice(*bounds)] if bounds else item


FUNCTIONS.update({
    "index": _index,
    "len": _len,
    "json": to_json,
    "print": _print,
    "printf": _printf,
    "println": lambda *args: " ".join(go_str(a) for a in args) + "\n",
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "join": lambda items, sep: sep.join(go_str(i) for i in items or ()),
    "split": lambda s, sep: go_str(s).split(sep),
    "pad": lambda s, before, after: " " * before + go_str(s) + " " * after,
    "truncate": lambda s, n: go_str(s)[:n],
    "slice": _slice,
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": _compare(lambda a, b: a != b),
    "lt": _compare(lambda a, b: a < b),
    "le": _compare(lambda a, b: a <= b),
    "gt": _compare(lambda a, b: a > b),
    "ge": _compare(lambda a, b: a >= b),
    "and": _and,
    "or": _or,
    "not": lambda a: not truth(a),
})


# --------------------------------------------------------------------------- Docker's formats

def docker_format(source: str) -> tuple[bool, Template]:
    """Docker's --format: `json` alone is `{{json .}}`; a `table` prefix asks for a header and
    aligned columns; `\\t` and `\\n` written as two characters are a tab and a newline."""
    text = source
    table = text.startswith("table")
    if table:
        text = text[len("table"):]
    text = text.strip(" ")
    if text == "json" and not table:
        text = "{{json .}}"
    text = text.replace("\\t", "\t").replace("\\n", "\n")
    return table, parse(text)


def render_rows(source: str, rows: Iterable[Mapping], headers: Mapping[str, str],
                default_table: str | None = None) -> list[str]:
    """The lines `ps`/`images`/`stats`/`network ls`/`volume ls --format` print for `rows`.

    `headers` names each field's column (Docker's: ID -> CONTAINER ID); a field without one is
    its name upper-cased. `table` alone uses `default_table`.
    """
    if source.strip() == "table" and default_table is not None:
        source = default_table
    table, template = docker_format(source)
    texts = [template.render(row) for row in rows]
    if not table:
        return [line for text in texts for line in text.split("\n")] if texts else []
    header = template.render(_Header(headers))
    return tabwrite([header, *texts])


class _Header(dict):
    """The row a table's header is rendered from: each field gives its column's name."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__()
        self.headers = headers

    def get(self, key, default=None):
        return self.headers.get(key, key.upper())

    def __contains__(self, key: object) -> bool:
        return True
