"""Variable expansion with BuildKit's lexer semantics (quotes, escapes, modifiers, splitting)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_isobox.builder.dockerfile import DockerfileError
from pytest_isobox.builder.expand import (
    EXPANDING_INSTRUCTIONS,
    ExpansionError,
    ShellLexer,
    expand,
    expand_heredoc,
    expand_words,
    referenced_names,
)

ENV = {"PWD": "/home", "SHELL": "bash", "EMPTY": "", "KOREAN": "한국어", "SPACED": "a  b "}


@pytest.mark.parametrize(("word", "expected"), [
    # plain text, quotes
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ('"a b"', "a b"),
    ("'a b'", "a b"),
    ('"it\'s"', "it's"),
    ("'say \"hi\"'", 'say "hi"'),
    ('"\'\'"', "''"),
    ("안'녕'하세요", "안녕하세요"),
    # escapes outside quotes
    ("he\\'llo", "he'llo"),
    ("abc\\tdef", "abctdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ("a\\ b", "a b"),
    # escapes inside double quotes: only \" \$ \\ are escapes
    ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"),
    ('"a\\"b"', 'a"b'),
    ('"he\\$PWD"', "he$PWD"),
    ('"he\\\\$PWD"', "he\\/home"),
    # single quotes are literal, escapes included
    ("'abc\\tdef'", "abc\\tdef"),
    ("'hello\\'", "hello\\"),
    ("'$PWD'", "$PWD"),
    ("'he${XX}'", "he${XX}"),
    # simple variables
    ("$PWD", "/home"),
    ("he$PWD", "he/home"),
    ("he${PWD}xx", "he/homexx"),
    ("he$pwd.", "he."),
    ("$KOREAN!", "한국어!"),
    ('"he${PWD}"', "he/home"),
    ('"he\'$PWD\'"', "he'/home'"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ("\\${}", "${}"),
    ("$", "$"),
    ("$.", "$."),
    ("a$ b", "a$ b"),
    ("$UNSET-x", "-x"),
    ("${hi}", ""),
    # positional and special parameters are never set
    ("he$1x", "hex"),
    ("$999aaa", "aaa"),
    ("$@@@", "@@"),
    ("${#:-bbb}", "bbb"),
    ("$$", ""),
    # defaults and alternatives
    ("${UNSET:-000}", "000"),
    ("${EMPTY:-000}", "000"),
    ("${EMPTY-000}", ""),
    ("${UNSET-000}", "000"),
    ("${PWD:-000}", "/home"),
    ("${UNSET:-$PWD}", "/home"),
    ("${UNSET:-${PWD:-yyy}}", "/home"),
    ("${UNSET:-${YYY:-yyy}}", "yyy"),
    ("${UNSET:-a b}", "a b"),
    ("${UNSET:-\\$PWD:}x", "$PWD:x"),
    ("${UNSET:-\\${PWD}z}x", "${PWDz}x"),
    ("${aaa:-bbb {foo}", "bbb {foo"),
    ("${aaa}}", "}"),
    ("${PWD:+000}", "000"),
    ("${EMPTY:+000}", ""),
    ("${EMPTY+000}", "000"),
    ("${UNSET+000}", ""),
    ("${PWD:+${SHELL}}", "bash"),
    ("${PWD:+${PWD}:}xx", "/home:xx"),
    ("${PWD?}", "/home"),
    ("${EMPTY?}", ""),
    ("${PWD:?must be set}", "/home"),
    # pattern removal and replacement
    ("${PWD#/}", "home"),
    ("${PWD#*o}", "me"),
    ("${PWD##*/}", "home"),
    ("${PWD%e}", "/hom"),
    ("${PWD%%o*}", "/h"),
    ("${PWD%o*}", "/h"),
    ("${PWD#}", "/home"),
    ("${PWD/o/0}", "/h0me"),
    ("${SHELL//s/S}", "baSh"),
    ("${SHELL/#/x}", "bash"),
    ("${UNSET/a/b}", ""),
    ('"${PWD##*/}"', "home"),
])
def test_expand(word: str, expected: str) -> None:
    assert expand(word, ENV) == expected


@pytest.mark.parametrize(("word", "message"), [
    ("he'llo", "matching single-quote"),
    ('"hello', "matching double-quote"),
    ('"hello\\"', "matching double-quote"),
    ("he\\\\'llo", "matching single-quote"),
    ("${}", "bad substitution"),
    ("he${}xx", "bad substitution"),
    ("${:}", "bad substitution"),
    ("${:-bbb}", "bad substitution"),
    ("${{aaa}", "bad substitution"),
    ("he${.}", "unsupported modifier"),
    ("he${PWD", "unsupported modifier"),
    ("${", "missing '}'"),
    ("${aaa:-bbb", "missing '}'"),
    ("${aaa:-bbb ${foo}", "missing '}'"),
    ("he${XXX:YYY}", r"unsupported modifier \(:Y\)"),
    ("${PWD:=000}", r"unsupported modifier \(:=\)"),
    ("${PWD:#x}", r"unsupported modifier \(:#\)"),
    ("${PWD:%x}", r"unsupported modifier \(:%\)"),
    ("${PWD#\\x}", "invalid escape"),
    ("${PWD/x}", "missing '/'"),
    ("${UNSET?}", "UNSET: is not allowed to be unset"),
    ("${UNSET:?}", "UNSET: is not allowed to be unset"),
    ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
    ("${UNSET?set it with --build-arg}", "UNSET: set it with --build-arg"),
    ("${EMPTY:?give a value}", "EMPTY: give a value"),
])
def test_expand_errors(word: str, message: str) -> None:
    with pytest.raises(ExpansionError, match=message) as info:
        expand(word, ENV)
    assert word in str(info.value)
    assert isinstance(info.value, DockerfileError)


def test_expansion_error_can_be_located() -> None:
    with pytest.raises(ExpansionError) as info:
        expand("${V:?required}", {})
    located = info.value.located("Dockerfile", 4)
    assert isinstance(located, ExpansionError)
    assert str(located).startswith("Dockerfile:4: ")
    assert str(located).endswith("V: required")


@pytest.mark.parametrize(("word", "expected"), [
    ("he`$PWD", "he$PWD"),
    ("a`\\b", "a\\b"),
    ("c:\\windows", "c:\\windows"),
    ('"a`"b"', 'a"b'),
    ('"a\\b"', "a\\b"),
    ("x`", "x"),
])
def test_backtick_escape(word: str, expected: str) -> None:
    assert expand(word, ENV, escape="`") == expected


def test_invalid_escape_token() -> None:
    with pytest.raises(ValueError, match="invalid escape token"):
        expand("x", {}, escape="^")


@pytest.mark.parametrize(("text", "words"), [
    ("hello", ["hello"]),
    ("hello there", ["hello", "there"]),
    ("  hello   there  ", ["hello", "there"]),
    ("hello\\ there", ["hello there"]),
    ('hello" there  "', ["hello there  "]),
    ('hello\\" there', ['hello"', "there"]),
    ('hello"\\\\there"', ["hello\\there"]),
    ("hello'\\\\there'", ["hello\\\\there"]),
    ("hello'$there'", ["hello$there"]),
    ("x${SPACED}y", ["xa", "b", "y"]),
    ('x"${SPACED}"y', ["xa  b y"]),
    ("$SPACED", ["a", "b"]),
    ("$UNSET", []),
    ('""', []),
    ("a '' b", ["a", "b"]),
    ("80/tcp ${PORT:-443}/tcp", ["80/tcp", "443/tcp"]),
    ("abc${UNSET:-80}def", ["abc80def"]),
])
def test_expand_words(text: str, words: list[str]) -> None:
    assert expand_words(text, ENV) == words


def test_expand_words_error() -> None:
    with pytest.raises(ExpansionError):
        expand_words('a "b', ENV)


@pytest.mark.parametrize(("text", "names"), [
    ("plain", set()),
    ("$A ${B} ${C:-$D} ${E:+${F}}", {"A", "B", "C", "D", "E", "F"}),
    ("${A?} ${B:?msg}", {"A", "B"}),
    ("'$A' \\$B \"$C\"", {"C"}),
    ("${A#$B} ${C/$D/$E}", {"A", "B", "C", "D", "E"}),
    ("$1 $@", {"1", "@"}),
])
def test_referenced_names(text: str, names: set[str]) -> None:
    assert referenced_names(text) == names


def test_referenced_names_uses_escape_token() -> None:
    assert referenced_names("`$A $B", escape="`") == {"B"}


def test_referenced_names_rejects_bad_syntax() -> None:
    with pytest.raises(ExpansionError):
        referenced_names("${A")


def test_raw_lexer_keeps_quotes_escapes_and_unset_variables() -> None:
    lexer = ShellLexer(raw_quotes=True, raw_escapes=True, skip_unset=True)
    result, words = lexer.process("'a b' \\\"c $X ${Y:-z} <<  EOF", {})
    assert result == "'a b' \\\"c $X ${Y:-z} <<  EOF"
    assert words == ["'a b'", '\\"c', "$X", "${Y:-z}", "<<  EOF"]


def test_expanding_instructions_table() -> None:
    assert {"add", "copy", "env", "expose", "from", "label", "stopsignal", "user", "volume",
            "workdir", "arg"} <= set(EXPANDING_INSTRUCTIONS)
    assert not {"cmd", "entrypoint", "healthcheck", "shell", "maintainer", "onbuild"} & set(
        EXPANDING_INSTRUCTIONS)
    assert "from" not in EXPANDING_INSTRUCTIONS["copy"]


# ---------------------------------------------------------------------- properties

_PLAIN = st.text(st.characters(blacklist_characters="$'\"\\<`", blacklist_categories=("Cs",)))
_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)


@settings(database=None)
@given(_PLAIN)
def test_text_without_special_characters_is_unchanged(text: str) -> None:
    assert expand(text, ENV) == text


@settings(database=None)
@given(st.text(st.characters(blacklist_characters="'", blacklist_categories=("Cs",))))
def test_single_quotes_are_literal(text: str) -> None:
    assert expand(f"'{text}'", ENV) == text


@settings(database=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1))
def test_escaping_every_character_gives_the_text(text: str) -> None:
    assert expand("".join("\\" + ch for ch in text), ENV) == text


@settings(database=None)
@given(_NAME, st.text(st.characters(blacklist_categories=("Cs",))), _PLAIN.filter(
    lambda s: "}" not in s))
def test_modifiers_follow_set_and_empty_state(name: str, value: str, word: str) -> None:
    unset: dict[str, str] = {}
    empty = {name: ""}
    full = {name: value}
    assert expand(f"${{{name}:-{word}}}", unset) == word
    assert expand(f"${{{name}:-{word}}}", empty) == word
    assert expand(f"${{{name}-{word}}}", empty) == ""
    assert expand(f"${{{name}+{word}}}", empty) == word
    assert expand(f"${{{name}:+{word}}}", empty) == ""
    assert expand(f"${{{name}}}", full) == value
    assert expand(f'"${name}"', full) == value
    if value:
        assert expand(f"${{{name}:-{word}}}", full) == value
        assert expand(f"${{{name}:+{word}}}", full) == word
    assert referenced_names(f"${{{name}:-{word}}}") == {name}


_PIECE = st.one_of(st.sampled_from("ab $"), st.tuples(st.just("escaped"),
                                                    st.sampled_from("ab '\"$")))


@settings(database=None)
@given(st.lists(_PIECE, max_size=12))
def test_backtick_and_backslash_escapes_are_interchangeable(pieces: list) -> None:
    def render(escape: str) -> str:
        return "".join(p if isinstance(p, str) else escape + p[1] for p in pieces)

    assert expand(render("`"), ENV, escape="`") == expand(render("\\"), ENV)


def test_none_value_counts_as_unset() -> None:
    env = {"A": None}
    assert expand("${A:-d}|${A-d}|${A+set}|$A", env) == "d|d||"
    with pytest.raises(ExpansionError, match="A: is not allowed to be unset"):
        expand("${A?}", env)


@pytest.mark.parametrize(("body", "expected"), [
    ('echo "$PWD" \'$SHELL\'\n', "echo \"/home\" 'bash'\n"),
    ("price: \\$5 for ${UNSET:-one}\n", "price: $5 for one\n"),
    ("a\\nb\n", "anb\n"),
    ("it's\n", "it's\n"),
])
def test_expand_heredoc(body: str, expected: str) -> None:
    assert expand_heredoc(body, ENV) == expected
