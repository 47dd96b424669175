"""Variable expansion in Dockerfile words, with the semantics of BuildKit's shell lexer.

What a build sees after `ENV`, `ARG`, `COPY $SRC ...` is decided here: `$v`, `${v}`,
`${v:-w}`, `${v-w}`, `${v:+w}`, `${v+w}`, `${v:?msg}`, `${v?msg}`, `${v#pat}`, `${v##pat}`,
`${v%pat}`, `${v%%pat}`, `${v/pat/repl}`, `${v//pat/repl}`, nested expansions inside the
alternative words, single quotes literal, double quotes expanding, the active escape token
(backslash or backtick) escaping the next character, and a trailing escape token dropped.

Quotes are removed as BuildKit's `ProcessWord` removes them, so every word BuildKit expands must
go through `expand` even when it holds no `$` (an `ENV a="b c"` value is `b c` only afterwards).

Which instructions expand is the builder's business; `EXPANDING_INSTRUCTIONS` records the rule of
the Dockerfile reference and BuildKit for it.

One deliberate difference from BuildKit at 73ed6825: its `ProcessWords` shares one word buffer
between nested `${v:-...}` expansions and so drops the text before such an expansion
(`abc${X:-80}` gives `80`); here the word is kept whole (`abc80`), as before that regression.
"""

from __future__ import annotations

import re

from pytest_isobox.builder.dockerfile import DockerfileError, is_go_space

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "EXPANDING_INSTRUCTIONS",
    "WORD_SPLITTING_INSTRUCTIONS",
    "ExpansionError",
    "ShellLexer",
    "expand",
    "expand_heredoc",
    "expand_words",
    "referenced_names",
]

#: Instructions whose arguments (and the values of the flags listed) are expanded with the build's
#: ARG and ENV values, per the Dockerfile reference and BuildKit: key and value of ENV, LABEL and
#: ARG; every source and the destination of ADD/COPY (JSON form too) and their `--chown`, `--chmod`
#: (and `--checksum` of ADD; COPY's `--from` is never expanded: BuildKit rejects a variable
#: there); the image and `--platform` of FROM (with the meta ARGs only); EXPOSE ports (split into words, see `WORD_SPLITTING_INSTRUCTIONS`); the value of
#: STOPSIGNAL, USER, WORKDIR; each VOLUME path; and RUN's `--mount`/`--network` flag values.
#: CMD, ENTRYPOINT, HEALTHCHECK, SHELL, MAINTAINER, ONBUILD and RUN's command are never expanded
#: by the builder (the container's shell does it); an ONBUILD trigger expands when it runs.
EXPANDING_INSTRUCTIONS: Mapping[str, tuple[str, ...]] = {
    "add": ("chown", "chmod", "checksum"),
    "arg": (),
    "copy": ("chown", "chmod"),
    "env": (),
    "expose": (),
    "from": ("platform",),
    "label": (),
    "run": ("mount", "network"),
    "stopsignal": (),
    "user": (),
    "volume": (),
    "workdir": (),
}

#: Instructions whose shell-form arguments are expanded with `expand_words` (one argument may
#: become several words) instead of word by word with `expand`.
WORD_SPLITTING_INSTRUCTIONS = frozenset({"expose"})


class ExpansionError(DockerfileError):
    """A word could not be expanded: bad syntax, or a `${v:?msg}` whose variable is unset."""


def expand(word: str, env: Mapping[str, str | None], escape: str = "\\") -> str:
    """`word` with its variables replaced and its quotes and escapes removed (BuildKit's
    ProcessWord): whitespace inside the word is kept, nothing is split. A variable mapped to
    None counts as unset (an ARG declared without a value)."""
    return ShellLexer(escape).process(word, env)[0]


def expand_words(text: str, env: Mapping[str, str | None], escape: str = "\\") -> list[str]:
    """`text` expanded and split into words at unquoted whitespace, the whitespace coming from
    an unquoted expansion splitting too (BuildKit's ProcessWords)."""
    return ShellLexer(escape).process(text, env)[1]


def expand_heredoc(text: str, env: Mapping[str, str | None]) -> str:
    """The body of a COPY/ADD heredoc whose delimiter was unquoted (`Heredoc.expand`; pass
    `Heredoc.text`), expanded as BuildKit expands it: variables replaced and backslash escapes
    applied whatever the escape directive, quotes left as they are. RUN heredocs are not
    expanded by the build: the shell running them does it."""
    return ShellLexer("\\", skip_quotes=True).process(text, env)[0]


def referenced_names(text: str, escape: str = "\\") -> set[str]:
    """Every variable name `text` would look up when expanded, whichever values they have: the
    names inside `${a:-$b}` and `${a:+$b}` count both; names in single quotes or escaped `\\$`
    do not. `${v?}` checks are not applied; bad syntax raises ExpansionError."""
    lexer = ShellLexer(escape, check_required=False)
    lexer.process(text, {})
    return lexer.looked_up


_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_HEREDOC_SPACE = frozenset("\t\r ")


class ShellLexer:
    """One configured pass of BuildKit's lexer over a word; also used by the Dockerfile parser
    to find heredoc words (`raw_quotes`, `raw_escapes`, `skip_unset` keep the text as written).

    - raw_quotes: keep quote characters in the result.
    - raw_escapes: keep escape tokens in the result.
    - skip_unset: leave `$v`, `${v...}` as written when `v` is unset.
    - skip_quotes: treat quotes as ordinary characters (heredoc bodies).
    - check_required: raise for `${v?}`/`${v:?}` (off only for `referenced_names`).

    `looked_up` collects every variable name the lexer has looked up so far.
    """

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False,
                 raw_escapes: bool = False, skip_unset: bool = False,
                 skip_quotes: bool = False, check_required: bool = True) -> None:
        if escape not in ("\\", "`"):
            raise ValueError(f"invalid escape token {escape!r}: must be \\ or `")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.quotes = "" if skip_quotes else "'\""
        self.check_required = check_required
        self.looked_up: set[str] = set()
        self._text = ""
        self._pos = 0
        self._env: Mapping[str, str | None] = {}

    def process(self, text: str, env: Mapping[str, str | None]) -> tuple[str, list[str]]:
        """(the expanded word, the expanded words) of `text`; raises ExpansionError."""
        self._text, self._pos, self._env = text, 0, env
        try:
            return self._until(None, self.raw_escapes)
        except _LexError as e:
            raise ExpansionError(f'failed to process "{text}": {e}') from None

    # ------------------------------------------------------------------ scanning

    def _peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _next(self) -> str:
        ch = self._peek()
        self._pos += 1 if ch else 0
        return ch

    def _until(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to and including `stop` (None: the end of the text)."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._scan(stop)
        finally:
            self.raw_escapes = saved

    def _scan(self, stop: str | None) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        while (ch := self._peek()) != "":
            if ch == stop:
                self._next()
                return "".join(result), words.finish()
            if ch == "$":
                value = self._dollar()
                words.add_split(value)
            elif ch == "<":
                value = self._possible_heredoc()
                words.add_raw(value)
            elif ch in self.quotes:
                value = self._single_quoted() if ch == "'" else self._double_quoted()
                words.add_raw(value)
            else:
                self._next()
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self._next()
                    if ch == "":
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                value = ch
            result.append(value)
        if stop is not None:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.finish()

    def _single_quoted(self) -> str:
        quote = self._next()
        out = [quote] if self.raw_quotes else []
        while True:
            ch = self._next()
            if ch == "":
                raise _LexError("unexpected end of statement while looking for matching "
                                "single-quote")
            if ch == "'":
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def _double_quoted(self) -> str:
        quote = self._next()
        out = [quote] if self.raw_quotes else []
        while True:
            ch = self._peek()
            if ch == "":
                raise _LexError("unexpected end of statement while looking for matching "
                                "double-quote")
            if ch == '"':
                self._next()
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            ch = self._next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self._peek()
                if following == "":
                    continue
                if following in ('"', "$", self.escape):
                    ch = self._next()
            out.append(ch)

    def _possible_heredoc(self) -> str:
        self._next()
        if self._peek() != "<":
            return "<"
        self._next()
        start = self._pos
        while self._peek() in _HEREDOC_SPACE:
            self._next()
        return "<<" + self._text[start:self._pos]

    # ------------------------------------------------------------------ variables

    def _name(self) -> str:
        start = self._pos
        first = self._peek()
        if first.isdecimal():
            while self._peek().isdecimal():
                self._next()
            return self._text[start:self._pos]
        if first in _SPECIAL_PARAMS:
            return self._next()
        while (ch := self._peek()) != "" and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            self._next()
        return self._text[start:self._pos]

    def _lookup(self, name: str) -> str | None:
        self.looked_up.add(name)
        return self._env.get(name)

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            if name == "":
                return "$"
            value = self._lookup(name)
            if value is None:
                return "$" + name if self.skip_unset else ""
            return value

        self._next()
        following = self._peek()
        if following == "":
            raise _LexError("syntax error: missing '}'")
        if following in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self._name()
        op = self._next()
        if op == "}":
            value = self._lookup(name)
            if value is None:
                return "${" + name + "}" if self.skip_unset else ""
            return value
        if op == "/":
            return self._replace(name)
        null_is_unset = op == ":"
        if null_is_unset:
            op = self._next()
        modifier = (":" if null_is_unset else "") + op
        if op == "" and not null_is_unset:
            raise _LexError("unsupported modifier (\ufffd) in substitution")
        if not null_is_unset and op not in "+-?#%":
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")
        pattern_op = op in ("#", "%")
        if null_is_unset and pattern_op:
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")
        word = self._until_brace(pattern_op)
        value = self._lookup(name)
        if value is None and self.skip_unset:
            return "${" + name + modifier + word + "}"
        unset = value is None or (null_is_unset and value == "")
        if op == "-":
            return word if unset else value
        if op == "+":
            return "" if unset else word
        if op == "?":
            if self.check_required and value is None:
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if self.check_required and unset:
                raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value or ""
        if op in ("#", "%"):
            greedy = word.startswith(op)
            pattern = word[1:] if greedy else word
            if op == "%":
                return _trim_suffix(pattern, value or "", greedy)
            return _trim_prefix(pattern, value or "", greedy)
        raise _LexError(f"unsupported modifier ({modifier}) in substitution")

    def _until_brace(self, raw_escapes: bool) -> str:
        try:
            return self._until("}", raw_escapes)[0]
        except _LexError:
            if self._peek() == "":
                raise _LexError("syntax error: missing '}'") from None
            raise

    def _replace(self, name: str) -> str:
        replace_all = self._peek() == "/"
        if replace_all:
            self._next()
        try:
            pattern = self._until("/", True)[0]
        except _LexError:
            if self._peek() == "":
                raise _LexError("syntax error: missing '/' in ${}") from None
            raise
        replacement = self._until_brace(True)
        value = self._lookup(name)
        if value is None and self.skip_unset:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        return regex.sub(lambda _m: replacement, value or "", count=0 if replace_all else 1)


class _LexError(Exception):
    """A lexing failure, reported as ExpansionError naming the whole word."""


class _Words:
    """The word splitter: unquoted whitespace ends a word, quoted text never does."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.current = ""
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_go_space(ch):
            if self.in_word and self.current:
                self.words.append(self.current)
                self.current = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.current += text
        self.in_word = True

    def add_split(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def finish(self) -> list[str]:
        if self.current:
            self.words.append(self.current)
            self.current = ""
            self.in_word = False
        return self.words


# ---------------------------------------------------------------------- shell patterns

_ESCAPABLE_IN_PATTERN = frozenset("*?\\")


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard pattern (`*`, `?`, backslash escapes; no brackets) as a regex."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i] if i < len(pattern) else ""
            if following in ("}", "/"):
                continue
            i += 1
            if following not in _ESCAPABLE_IN_PATTERN:
                shown = following or "\ufffd"
                raise _LexError(f"invalid pattern ({pattern}) in substitution: "
                                f"invalid escape '\\{shown}'")
            out.append(re.escape(following))
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end():] if match else value


def _reverse_pattern(pattern: str) -> str:
    """The pattern reversed, each escape staying in front of the character it escapes."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i != len(pattern) - 1:
            tokens.append(pattern[i:i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # The shortest/longest rightmost match is the leftmost match of the reversed pattern in the
    # reversed value.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]
