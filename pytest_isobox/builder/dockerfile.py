"""The Dockerfile parser: text to a list of instructions, by the rules of BuildKit's parser.

Covered as BuildKit does it (frontend/dockerfile/parser): the `syntax`, `escape` and `check`
parser directives (only in the leading comment block, each at most once), the escape token as
line-continuation character (a line ending in an escaped escape token does not continue),
comments and empty lines inside continuations (the latter recorded as warnings), per-instruction
argument shapes (JSON or shell form, whitespace lists, ENV/LABEL pairs, ARG words, HEALTHCHECK's
type word, ONBUILD's nested instruction), builder flags before the arguments (`--from=x`, a
bare `--` ending them), and heredocs on RUN, COPY and ADD.

Beyond BuildKit's parser, `parse` rejects unknown instructions (BuildKit's next stage does), so a
typo is reported with its line. The argument checks of the next stage (counts, allowed flags)
are the builder's; `parse_flags` gives it BuildKit's flag grammar.

`dump` writes BuildKit's AST dump, the format of the conformance cases.
"""

from __future__ import annotations

import json
import re

from pytest_isobox.engine.errors import BuildError
from pytest_isobox.engine.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = [
    "INSTRUCTIONS",
    "Dockerfile",
    "DockerfileError",
    "Heredoc",
    "Instruction",
    "dump",
    "go_quote",
    "is_go_space",
    "onbuild_expression",
    "parse",
    "parse_flags",
    "parse_heredoc_word",
]

#: Every instruction the Dockerfile reference defines, lowercased.
INSTRUCTIONS = frozenset({
    "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label",
    "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir",
})

_HEREDOC_INSTRUCTIONS = frozenset({"add", "copy", "run"})
_DIRECTIVES = frozenset({"syntax", "escape", "check"})


class DockerfileError(BuildError):
    """A Dockerfile is malformed. The message names the file and, when known, the line:
    `Dockerfile:12: unknown instruction: FORM (did you mean FROM?)`."""

    def __init__(self, message: str, filename: str | None = None, line: int | None = None):
        self.message = message
        self.filename = filename
        self.line = line
        super().__init__(self._located_text())

    def _located_text(self) -> str:
        if self.filename is None:
            return self.message
        if self.line is None:
            return f"{self.filename}: {self.message}"
        return f"{self.filename}:{self.line}: {self.message}"

    def located(self, filename: str, line: int | None) -> DockerfileError:
        """The same error (same class) naming `filename` and `line`, e.g. for an expansion
        error found while building the instruction at that line."""
        return type(self)(self.message, filename, line)


class Heredoc(Record):
    """One here-document of an instruction (`RUN <<EOF`, `COPY <<-'EOF' /dst`).

    `content` is the body exactly as written, each line with its newline, tabs kept even for
    `<<-` (`chomp`); `text` is the body with chomping applied. `expand` is False when any part
    of the delimiter word was quoted: the body must then not be variable-expanded.
    """

    _fields = ("name", "content", "expand", "chomp", "file_descriptor")

    def __init__(self, name: str, content: str, expand: bool, chomp: bool,
                 file_descriptor: int = 0) -> None:
        self.name = name
        self.content = content
        self.expand = expand
        self.chomp = chomp
        self.file_descriptor = file_descriptor

    @property
    def text(self) -> str:
        """The body as the build uses it: leading tabs removed from each line when `chomp`."""
        return re.sub(r"(?m)^\t+", "", self.content) if self.chomp else self.content


class Instruction(Record):
    """One instruction, its arguments shaped as BuildKit's parser shapes them.

    - cmd: lowercased keyword ("run", "copy", ...).
    - args: JSON form: the array's strings. ENV and LABEL: (name, value, separator) triples,
      separator "=" for `k=v` pairs and "" for the legacy `ENV k v` (value unquoted later, by
      expansion). ARG: its words, quotes kept. ADD, COPY, VOLUME, EXPOSE, FROM in shell form:
      the whitespace-separated words. RUN, CMD, ENTRYPOINT, SHELL in shell form: one string.
      HEALTHCHECK: the type word ("CMD", "NONE") then the command as for CMD. MAINTAINER,
      USER, WORKDIR, STOPSIGNAL: one string. ONBUILD: none; see `next`.
    - flags: the builder flags as written without quotes, e.g. ["--from=build", "--link"].
    - original: the instruction's text, continuation lines joined (BuildKit's Original).
    - start_line, end_line: 1-based, end_line includes continuation and heredoc lines.
    - json_form: the arguments were a JSON array (exec form).
    - heredocs: here-documents in the order they appear on the line (ONBUILD: its trigger's).
    - next: ONBUILD's trigger, parsed as an instruction of its own (same lines; its `original`
      is the trigger text, the expression to store in an image's OnBuild list).
    """

    _fields = ("cmd", "args", "flags", "original", "start_line", "end_line", "json_form",
               "heredocs", "next")

    def __init__(self, cmd: str, args: list[str], flags: list[str], original: str,
                 start_line: int, end_line: int, json_form: bool = False,
                 heredocs: list[Heredoc] | None = None, next: Instruction | None = None) -> None:
        self.cmd = cmd
        self.args = args
        self.flags = flags
        self.original = original
        self.start_line = start_line
        self.end_line = end_line
        self.json_form = json_form
        self.heredocs = [] if heredocs is None else heredocs
        self.next = next


class Dockerfile(Record):
    """A parsed Dockerfile: instructions in order, the escape token in force (`\\` or a
    backtick), the `syntax` directive if any, and the parser's warnings."""

    _fields = ("instructions", "escape", "syntax", "filename", "warnings")

    def __init__(self, instructions: list[Instruction], escape: str = "\\",
                 syntax: str | None = None, filename: str = "Dockerfile",
                 warnings: list[str] | None = None) -> None:
        self.instructions = instructions
        self.escape = escape
        self.syntax = syntax
        self.filename = filename
        self.warnings = [] if warnings is None else warnings


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile. Raises DockerfileError naming `filename` and the line at fault."""
    return _Parser(text, filename).parse()


def dump(df: Dockerfile) -> str:
    """BuildKit's AST dump: one `(cmd ["flags"] "arg" ...)` line per instruction, strings
    quoted as Go's strconv.Quote, ending with a newline."""
    text = "".join(f"({_dump_instruction(ins)})\n" for ins in df.instructions)
    return _go_strip(text) + "\n"


def parse_flags(ins: Instruction, *, booleans: Collection[str] = (),
                strings: Collection[str] = (), lists: Collection[str] = (),
                filename: str = "Dockerfile") -> dict[str, bool | str | list[str]]:
    """The values of `ins.flags`, by BuildKit's flag rules: `--name=value` for string flags
    (`lists` may repeat and collect values), `--name`, `--name=true|false` for booleans, `--`
    ends the flags. Only flags that were given appear in the result. An unknown, repeated or
    malformed flag raises DockerfileError naming the file and line."""
    def fail(message: str) -> DockerfileError:
        return DockerfileError(message, filename, ins.start_line)

    known = set(booleans) | set(strings) | set(lists)
    values: dict[str, bool | str | list[str]] = {}
    for flag in ins.flags:
        if flag == "--":
            break
        if not flag.startswith("--"):
            raise fail(f"arg should start with -- : {flag}")
        flag_name, has_value, value = flag.partition("=")
        name = flag_name[2:]
        if name not in known:
            import difflib  # (only for a typo)

            hint = difflib.get_close_matches(name, sorted(known), n=1)
            suggestion = f" (did you mean --{hint[0]}?)" if hint else ""
            raise fail(f"unknown flag: {flag_name}{suggestion} for {ins.cmd.upper()}")
        if name in values and name not in lists:
            raise fail(f"duplicate flag specified: {flag_name}")
        if name in booleans:
            if has_value and value == "":
                raise fail(f"missing a value on flag: {flag_name}")
            if value.lower() not in ("true", "false", ""):
                raise fail(f"expecting boolean value for flag {flag_name}, not: {value}")
            values[name] = value.lower() != "false"
        elif not has_value:
            raise fail(f"missing a value on flag: {flag_name}")
        elif name in lists:
            collected = values.setdefault(name, [])
            assert isinstance(collected, list)
            collected.append(value)
        else:
            values[name] = value
    return values


_ONBUILD_KEYWORD = r"(?i)^\s*ONBUILD\s*"


def onbuild_expression(ins: Instruction) -> str:
    """The trigger an image's OnBuild list stores for an ONBUILD instruction, as BuildKit stores
    it: the instruction without its ONBUILD keyword, each heredoc's body and terminator appended,
    so that parsing the expression again gives the same trigger, heredocs included."""
    parts = [re.sub(_ONBUILD_KEYWORD, "", ins.original, count=1)]
    for heredoc in ins.heredocs:
        parts.append("\n" + heredoc.content + heredoc.name)
    return "".join(parts)


# ---------------------------------------------------------------------- Go compatibility

def is_go_space(ch: str) -> bool:
    """Go's unicode.IsSpace, which BuildKit uses wherever it trims or splits on whitespace."""
    return ch.isspace() and ch not in "\x1c\x1d\x1e\x1f"


def _go_strip(s: str) -> str:
    start, end = 0, len(s)
    while start < end and is_go_space(s[start]):
        start += 1
    while end > start and is_go_space(s[end - 1]):
        end -= 1
    return s[start:end]


def _go_lstrip(s: str) -> str:
    start = 0
    while start < len(s) and is_go_space(s[start]):
        start += 1
    return s[start:]


_SIMPLE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                   "\t": "\\t", "\v": "\\v"}


def go_quote(s: str) -> str:
    """`s` quoted as Go's strconv.Quote: printable characters kept, `"` and `\\` escaped,
    control characters as `\\n`, `\\xNN`, other non-printables as `\\uNNNN`/`\\UNNNNNNNN`."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif ch.isprintable():
            out.append(ch)
        elif ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _dump_instruction(ins: Instruction) -> str:
    parts = [ins.cmd]
    if ins.flags:
        parts.append("[" + " ".join(go_quote(f) for f in ins.flags) + "]")
    if ins.next is not None:
        parts.append(f"({_dump_instruction(ins.next)})")
    parts.extend(go_quote(a) for a in ins.args)
    return _go_strip(" ".join(parts))


# ---------------------------------------------------------------------- lines and directives

_GO_REGEX_SPACE = "[\t\n\f\r ]"  # RE2's \s
_WHITESPACE = re.compile("[\t\v\f\r ]+")
# (compiled on first use, by re's cache: a Dockerfile without comments or heredocs, as a
# cached build's, never needs them, and compiling a pattern costs more than parsing a file)
_DIRECTIVE = (rf"([a-zA-Z][a-zA-Z0-9]*){_GO_REGEX_SPACE}*={_GO_REGEX_SPACE}*"
              rf"(.+?){_GO_REGEX_SPACE}*\Z")
_HEREDOC_WORD = rf"([0-9]*)<<(-?){_GO_REGEX_SPACE}*([^<]*)\Z"


def _physical_lines(text: str) -> list[str]:
    """Lines with their `\\n` kept, split on `\\n` only (a lone `\\r` is not a line end)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    return lines


def _trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _is_comment(line: str) -> bool:
    return _go_lstrip(line).startswith("#")


class _Directives:
    """The parser directives of the leading comment block, and the escape token they set."""

    def __init__(self) -> None:
        self.escape = "\\"
        self.syntax: str | None = None
        self._seen: set[str] = set()
        self._done = False

    def feed(self, line: str) -> None:
        """Look at one more line; a directive must come before anything else."""
        if self._done:
            return
        if not line.startswith("#"):
            self._done = True
            return
        match = re.match(_DIRECTIVE, _go_lstrip(line[1:]))
        name = match.group(1).lower() if match else ""
        if name not in _DIRECTIVES:
            self._done = True
            return
        if name in self._seen:
            raise ValueError(f"only one {name} parser directive can be used")
        self._seen.add(name)
        value = match.group(2) if match else ""
        if name == "escape":
            if value not in ("`", "\\"):
                raise ValueError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
        elif name == "syntax":
            self.syntax = value

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """(the line without its continuation token, whether the instruction ends here).

        A trailing escape token (spaces and tabs may follow it) continues the line unless it
        is itself escaped: BuildKit's rule, which also misses a line ending in three escape
        tokens (kept for compatibility). The token is one character (see `feed`)."""
        body = line.rstrip(" \t")
        if not body.endswith(self.escape) or body[-2:-1] == self.escape:
            return line, True
        return body[:-1], False


# ---------------------------------------------------------------------- the parser

class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.lines = _physical_lines(text)
        self.index = 0           # next physical line to read
        self.directives = _Directives()
        self.warnings: list[str] = []

    def error(self, message: str, line: int | None) -> DockerfileError:
        return DockerfileError(message, self.filename, line)

    def _read(self) -> str | None:
        if self.index >= len(self.lines):
            return None
        line = self.lines[self.index]
        self.index += 1
        return line

    def _process(self, raw: str, strip_left: bool) -> str:
        """A line with its newline removed, empty if it is a comment; feeds the directives."""
        line = _trim_newline(raw)
        if strip_left:
            line = _go_lstrip(line)
        try:
            self.directives.feed(line)
        except ValueError as e:
            raise self.error(str(e), self.index) from None
        return "" if _is_comment(line) else line

    def parse(self) -> Dockerfile:
        instructions: list[Instruction] = []
        while (raw := self._read()) is not None:
            start_line = self.index
            first, ended = self.directives.trim_continuation(self._process(raw, True))
            if ended and not first:
                continue
            line = self._join_continuation(first, ended)
            ins = self._instruction(line, start_line)
            if _can_hold_heredocs(ins) and "<<" in line:
                ins.heredocs = self._read_heredocs(line, start_line)
                if ins.next is not None:
                    ins.next.heredocs = list(ins.heredocs)
            ins.end_line = self.index
            if ins.next is not None:
                ins.next.end_line = self.index
            instructions.append(ins)
        if not instructions:
            raise self.error("file with no instructions", None)
        return Dockerfile(instructions, self.directives.escape, self.directives.syntax,
                          self.filename, self.warnings)

    def _join_continuation(self, first: str, ended: bool) -> str:
        parts = [first]
        saw_empty = False
        while not ended and (raw := self._read()) is not None:
            line = self._process(raw, False)
            if _is_comment(raw):
                continue
            if not _go_lstrip(line):
                saw_empty = True
                continue
            line, ended = self.directives.trim_continuation(line)
            parts.append(line)
        joined = "".join(parts)
        if saw_empty:
            self.warnings.append(f"{self.filename}:{self.index}: empty continuation line found "
                                 f"in: {joined} (empty continuation lines will become errors "
                                 f"in a future release)")
        return joined

    def _instruction(self, line: str, start_line: int) -> Instruction:
        keyword, flags, rest = _split_command(line, self.directives.escape)
        cmd = keyword.lower()
        if cmd not in INSTRUCTIONS:
            import difflib  # (only for a typo)

            hint = difflib.get_close_matches(keyword.upper(), sorted(i.upper() for i in
                                                                     INSTRUCTIONS), n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise self.error(f"unknown instruction: {keyword}{suggestion}", start_line)
        try:
            if cmd == "onbuild":
                trigger = self._instruction(rest, start_line) if rest else None
                _check_trigger(trigger)
                return Instruction(cmd, [], flags, line, start_line, start_line, next=trigger)
            args, json_form = _ARGUMENT_PARSERS[cmd](rest, self.directives.escape)
        except _ArgumentError as e:
            raise self.error(str(e), start_line) from None
        return Instruction(cmd, args, flags, line, start_line, start_line, json_form)

    def _read_heredocs(self, line: str, start_line: int) -> list[Heredoc]:
        try:
            heredocs = _heredocs_in_line(line)
        except _ArgumentError as e:
            raise self.error(str(e), start_line) from None
        for heredoc in heredocs:
            body: list[str] = []
            while True:
                raw = self._read()
                if raw is None:
                    raise self.error(f"unterminated heredoc {heredoc.name}", start_line)
                candidate = _trim_newline(raw)
                if heredoc.chomp:
                    candidate = candidate.lstrip("\t")
                if candidate == heredoc.name:
                    break
                body.append(raw)
            heredoc.content = "".join(body)
        return heredocs


def _check_trigger(trigger: Instruction | None) -> None:
    if trigger is None:
        return
    if trigger.cmd == "onbuild":
        raise _ArgumentError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger.cmd in ("from", "maintainer"):
        raise _ArgumentError(f"{trigger.cmd.upper()} isn't allowed as an ONBUILD trigger")


def _can_hold_heredocs(ins: Instruction) -> bool:
    target = ins.next if ins.cmd == "onbuild" and ins.next is not None else ins
    return target.cmd in _HEREDOC_INSTRUCTIONS and not target.json_form


# ---------------------------------------------------------------------- splitting a line

def _split_command(line: str, escape: str) -> tuple[str, list[str], str]:
    """(keyword, flags, the rest) of an instruction line."""
    parts = _WHITESPACE.split(_go_strip(line), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = _extract_flags(parts[1], escape)
    return parts[0], flags, _go_strip(rest)


def _extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading `--words` as flags (quotes and escapes removed); a bare `--` ends them."""
    flags: list[str] = []
    pos, n = 0, len(line)
    while True:
        while pos < n and is_go_space(line[pos]):
            pos += 1
        if pos == n:
            return "", flags
        if not line.startswith("--", pos):
            return line[pos:], flags
        word: list[str] = []
        quote = ""
        quoted = False  # an empty quoted word ('') still counts as a flag
        while pos < n and (quote or not is_go_space(line[pos])):
            ch = line[pos]
            pos += 1
            if quote and ch == quote:
                quote = ""
                continue
            if not quote and ch in "'\"":
                quote, quoted = ch, True
                continue
            if ch == escape:
                if pos == n:
                    break
                ch = line[pos]
                pos += 1
            word.append(ch)
        text = "".join(word)
        if text == "--":
            return line[pos:], flags
        if quoted or text:
            flags.append(text)


class _ArgumentError(Exception):
    """Malformed arguments; reported as DockerfileError at the instruction's line."""


def _parse_words(rest: str, escape: str) -> list[str]:
    """Whitespace-separated words, quotes and escapes kept (ARG, and ENV/LABEL pairs)."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    blank_ok = False
    in_word = False
    pos, n = 0, len(rest)
    while pos < n:
        ch = rest[pos]
        pos += 1
        if not quote:
            if is_go_space(ch):
                if in_word and (blank_ok or word):
                    words.append("".join(word))
                word, blank_ok, in_word = [], False, False
                continue
            in_word = True
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == escape:
                if pos == n:
                    continue
                word.append(ch)
                ch = rest[pos]
                pos += 1
            word.append(ch)
            continue
        if ch == quote:
            quote = ""
        elif ch == escape and quote != "'":
            if pos == n:
                quote = ""
                continue
            word.append(ch)
            ch = rest[pos]
            pos += 1
        word.append(ch)
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


# ---------------------------------------------------------------------- argument shapes

def _whitespace_list(rest: str, escape: str) -> tuple[list[str], bool]:
    return (_WHITESPACE.split(rest) if rest else []), False


def _single_string(rest: str, escape: str) -> tuple[list[str], bool]:
    return ([rest] if rest else []), False


def _name_or_name_value(rest: str, escape: str) -> tuple[list[str], bool]:
    return _parse_words(rest, escape), False


def _json_array(rest: str) -> list[str] | None:
    """The strings of a JSON array; None if `rest` is not JSON (then it is shell form)."""
    rest = _go_lstrip(rest)
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not all(isinstance(item, str) for item in value):
        raise _ArgumentError("when using JSON array syntax, arrays must be comprised of "
                             "strings only")
    # Go decodes a lone surrogate escape as U+FFFD.
    return [re.sub("[\ud800-\udfff]", "\ufffd", item) for item in value]


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _maybe_json(rest: str, escape: str) -> tuple[list[str], bool]:
    if not rest:
        return [], False
    array = _json_array(rest)
    return ([rest], False) if array is None else (array, True)


def _maybe_json_to_list(rest: str, escape: str) -> tuple[list[str], bool]:
    array = _json_array(rest)
    return _whitespace_list(rest, escape) if array is None else (array, True)


def _name_value_pairs(rest: str, escape: str, keyword: str) -> tuple[list[str], bool]:
    words = _parse_words(rest, escape)
    if not words:
        return [], False
    if "=" not in words[0]:
        # Legacy `ENV name value...`: the value is the rest of the line as written.
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _ArgumentError(f"{keyword} must have two arguments")
        return [parts[0], parts[1], ""], False
    args: list[str] = []
    for word in words:
        if "=" not in word:
            raise _ArgumentError(f"Syntax error - can't find = in {go_quote(word)}. "
                                 "Must be of the form: name=value")
        name, _, value = word.partition("=")
        args += [name, value, "="]
    return args, False


def _env(rest: str, escape: str) -> tuple[list[str], bool]:
    return _name_value_pairs(rest, escape, "ENV")


def _label(rest: str, escape: str) -> tuple[list[str], bool]:
    return _name_value_pairs(rest, escape, "LABEL")


def _healthcheck(rest: str, escape: str) -> tuple[list[str], bool]:
    end = 0
    while end < len(rest) and not is_go_space(rest[end]):
        end += 1
    if end == 0:
        return [], False
    command, json_form = _maybe_json(_go_lstrip(rest[end:]), escape)
    return [rest[:end], *command], json_form


_ARGUMENT_PARSERS = {
    "add": _maybe_json_to_list,
    "arg": _name_or_name_value,
    "cmd": _maybe_json,
    "copy": _maybe_json_to_list,
    "entrypoint": _maybe_json,
    "env": _env,
    "expose": _whitespace_list,
    "from": _whitespace_list,
    "healthcheck": _healthcheck,
    "label": _label,
    "maintainer": _single_string,
    "run": _maybe_json,
    "shell": _maybe_json,
    "stopsignal": _single_string,
    "user": _single_string,
    "volume": _maybe_json_to_list,
    "workdir": _single_string,
}


# ---------------------------------------------------------------------- heredocs

def _heredocs_in_line(line: str) -> list[Heredoc]:
    """The heredocs a line opens, in order. Words are found as BuildKit does: with a backslash
    escape whatever the escape directive says, quotes and escapes kept, variables left as is."""
    from pytest_isobox.builder.expand import ExpansionError, ShellLexer

    lexer = ShellLexer("\\", raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lexer.process(line, {})[1]
    except ExpansionError:
        return []
    heredocs = []
    for word in words:
        heredoc = parse_heredoc_word(word)
        if heredoc is not None:
            heredocs.append(heredoc)
    return heredocs


def parse_heredoc_word(word: str) -> Heredoc | None:
    """The heredoc a word such as `<<EOF`, `<<-"EOF"` or `3<<EOF` opens (empty content), or
    None if the word is no heredoc. COPY/ADD sources that are heredocs are named by this."""
    from pytest_isobox.builder.expand import ExpansionError, ShellLexer

    match = re.match(_HEREDOC_WORD, word)
    if match is None or not match.group(3):
        return None
    descriptor, chomp, rest = int(match.group(1) or 0), match.group(2) == "-", match.group(3)
    try:
        words = ShellLexer("\\", skip_unset=True).process(rest, {})[1]
        if len(words) != 1:
            return None
        raw_words = ShellLexer("\\", skip_unset=True, raw_quotes=True).process(rest, {})[1]
    except ExpansionError as e:
        raise _ArgumentError(f"invalid heredoc {word}: {e.message}") from None
    if len(raw_words) != 1:
        raise _ArgumentError(f"internal lexing of heredoc produced inconsistent results: {rest}")

    def quotes(text: str) -> int:
        return text.count("'") + text.count('"')

    return Heredoc(words[0], "", quotes(words[0]) == quotes(raw_words[0]), chomp, descriptor)
