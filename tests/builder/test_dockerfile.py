"""The Dockerfile parser: BuildKit's rules for lines, directives, forms, flags and heredocs."""

from __future__ import annotations

import pytest

from pytest_isobox.builder.dockerfile import (
    Dockerfile,
    DockerfileError,
    Heredoc,
    Instruction,
    dump,
    go_quote,
    onbuild_expression,
    parse,
    parse_flags,
    parse_heredoc_word,
)
from pytest_isobox.engine import BuildError


def only(text: str) -> Instruction:
    """The single instruction after `FROM scratch`."""
    df = parse("FROM scratch\n" + text)
    assert len(df.instructions) == 2, df.instructions
    return df.instructions[1]


def dumped(text: str) -> list[str]:
    return dump(parse(text)).splitlines()


# ---------------------------------------------------------------------- lines and comments

def test_instruction_fields() -> None:
    ins = only("COPY --from=build --chown=1:1 a b /dst/\n")
    assert ins.cmd == "copy"
    assert ins.flags == ["--from=build", "--chown=1:1"]
    assert ins.args == ["a", "b", "/dst/"]
    assert ins.original == "COPY --from=build --chown=1:1 a b /dst/"
    assert (ins.start_line, ins.end_line) == (2, 2)
    assert not ins.json_form and ins.heredocs == [] and ins.next is None


def test_keyword_is_case_insensitive_and_lowercased() -> None:
    assert dumped("from alpine\nRuN echo hi\n") == ['(from "alpine")', '(run "echo hi")']


def test_continuation_joins_lines_and_keeps_inner_whitespace() -> None:
    ins = only("RUN echo a \\\n    b\\\n c\n")
    assert ins.args == ["echo a     b c"]
    assert (ins.start_line, ins.end_line) == (2, 4)


def test_comments_and_blank_lines_inside_a_continuation_are_skipped() -> None:
    df = parse("FROM x\nRUN a \\\n# comment\n  # indented comment\n\n  b\n")
    assert df.instructions[1].args == ["a   b"]
    assert df.instructions[1].end_line == 6
    assert len(df.warnings) == 1 and "empty continuation line" in df.warnings[0]


def test_no_warning_without_empty_continuation_line() -> None:
    assert parse("FROM x\nRUN a \\\n b\n").warnings == []


def test_escaped_escape_token_at_end_does_not_continue() -> None:
    assert dumped("FROM x\nENV A a\\\\\nENV B b\n")[1:] == [
        '(env "A" "a\\\\\\\\" "")', '(env "B" "b" "")']


def test_continuation_at_end_of_file() -> None:
    assert dumped("FROM x\nRUN a \\") == ['(from "x")', '(run "a")']


def test_comment_is_only_a_comment_at_line_start() -> None:
    assert only("RUN echo a # not a comment\n").args == ["echo a # not a comment"]


def test_crlf_line_endings_and_bom() -> None:
    df = parse("\ufeffFROM x\r\nRUN a \\\r\n b\r\n")
    assert dump(df) == '(from "x")\n(run "a  b")\n'


def test_lone_carriage_return_is_not_a_line_end() -> None:
    assert only("RUN a\rb\n").args == ["a\rb"]


def test_line_numbers_skip_comments_and_blank_lines() -> None:
    df = parse("# c\n\nFROM x\n\n# c\nRUN a \\\n\n b\nCMD c\n")
    assert [(i.start_line, i.end_line) for i in df.instructions] == [(3, 3), (6, 8), (9, 9)]


# ---------------------------------------------------------------------- directives

def test_escape_directive_backtick() -> None:
    df = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  /s\n")
    assert df.escape == "`"
    assert df.instructions[1].args == ["dir c:\\   /s"]


def test_syntax_and_escape_directives_together() -> None:
    df = parse("# syntax=docker/dockerfile:1\n#escape = `\nFROM `\n  x\n")
    assert df.syntax == "docker/dockerfile:1"
    assert df.escape == "`"
    assert df.instructions[0].args == ["x"]


def test_directive_may_be_indented_and_padded() -> None:
    df = parse("  #  syntax =  docker/dockerfile:1.7  \n\t# escape=`\nFROM x\n")
    assert (df.syntax, df.escape) == ("docker/dockerfile:1.7", "`")


def test_directive_after_a_comment_is_a_comment() -> None:
    df = parse("# hello\n# escape=`\nFROM x\n")
    assert df.escape == "\\" and df.syntax is None


def test_directive_after_an_empty_line_is_a_comment() -> None:
    assert parse("\n# escape=`\nFROM x\n").escape == "\\"


def test_directive_after_an_instruction_is_a_comment() -> None:
    df = parse("FROM x\n# escape=`\n# syntax=foo\nRUN a\n")
    assert df.escape == "\\" and df.syntax is None


def test_unknown_directive_ends_the_directive_block() -> None:
    assert parse("# foo=bar\n# escape=`\nFROM x\n").escape == "\\"


def test_check_directive_is_accepted() -> None:
    assert parse("# check=skip=all\n# escape=`\nFROM x\n").escape == "`"


def test_directive_names_are_case_insensitive() -> None:
    assert parse("# ESCAPE=`\nFROM x\n").escape == "`"


def test_repeated_directive_is_an_error() -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: only one escape parser directive"):
        parse("# escape=`\n# escape=\\\nFROM x\n")


def test_invalid_escape_token_is_an_error() -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:1: invalid escape token 'x'"):
        parse("# escape=x\nFROM x\n")


# ---------------------------------------------------------------------- forms

@pytest.mark.parametrize(("text", "args", "json_form"), [
    ('CMD ["a", "b c"]', ["a", "b c"], True),
    ("CMD []", [], True),
    ("CMD echo hi", ["echo hi"], False),
    ("CMD ['a']", ["['a']"], False),
    ('CMD ["a"', ['["a"'], False),
    ('CMD ["a"] x', ['["a"] x'], False),
    ('CMD ["\\u00e9\\n"]', ["é\n"], True),
    ('CMD ["\\ud800"]', ["\ufffd"], True),
    ("CMD [NaN]", ["[NaN]"], False),
    ('ENTRYPOINT ["/bin/sh", "-c"]', ["/bin/sh", "-c"], True),
    ('SHELL ["powershell", "-command"]', ["powershell", "-command"], True),
    ('RUN ["ls", "-la"]', ["ls", "-la"], True),
    ('COPY ["a b", "/dst"]', ["a b", "/dst"], True),
    ("COPY a  b\t/dst", ["a", "b", "/dst"], False),
    ('VOLUME ["/a", "/b"]', ["/a", "/b"], True),
    ("VOLUME /a /b", ["/a", "/b"], False),
    ("EXPOSE 80 443/tcp", ["80", "443/tcp"], False),
    ("USER app:app", ["app:app"], False),
    ("WORKDIR /some dir", ["/some dir"], False),
    ("STOPSIGNAL SIGKILL", ["SIGKILL"], False),
    ('MAINTAINER qingbing "qingbing@qq.com"', ['qingbing "qingbing@qq.com"'], False),
    ('ARG a="1 2" b', ['a="1 2"', "b"], False),
    ("ARG", [], False),
    ("CMD", [], False),
])
def test_argument_shapes(text: str, args: list[str], json_form: bool) -> None:
    ins = only(text + "\n")
    assert (ins.args, ins.json_form) == (args, json_form)


def test_json_array_of_non_strings_is_an_error() -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: .*arrays must be comprised of "
                                              r"strings only"):
        parse('FROM x\nCMD ["a", 1]\n')


@pytest.mark.parametrize(("text", "args"), [
    ("ENV a b c", ["a", "b c", ""]),
    ('ENV a "b c"', ["a", '"b c"', ""]),
    ("ENV a=b", ["a", "b", "="]),
    ("ENV a=b c=d", ["a", "b", "=", "c", "d", "="]),
    ('ENV a="b c" d=e\\ f', ["a", '"b c"', "=", "d", "e\\ f", "="]),
    ("ENV a=", ["a", "", "="]),
    ("ENV a=b=c", ["a", "b=c", "="]),
    ('LABEL "com.example.v"="1.0" x=y', ['"com.example.v"', '"1.0"', "=", "x", "y", "="]),
    ("LABEL maintainer me <me@x.org>", ["maintainer", "me <me@x.org>", ""]),
])
def test_env_and_label_pairs(text: str, args: list[str]) -> None:
    assert only(text + "\n").args == args


def test_env_pair_without_equals_is_an_error_naming_the_word() -> None:
    with pytest.raises(DockerfileError, match=r'Dockerfile:2: .*can\'t find = in "c"'):
        parse("FROM x\nENV a=b c\n")


def test_env_without_value_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="Dockerfile:3: ENV must have two arguments"):
        parse("FROM x\n\nENV PATH\n")


# ---------------------------------------------------------------------- flags

@pytest.mark.parametrize(("text", "flags", "args"), [
    ("COPY --from=build a /b", ["--from=build"], ["a", "/b"]),
    ("COPY --link --chmod=755 a /b", ["--link", "--chmod=755"], ["a", "/b"]),
    ("COPY -- --weird /b", [], ["--weird", "/b"]),
    ("COPY --x=1 -- --weird /b", ["--x=1"], ["--weird", "/b"]),
    ('COPY --chown="a b" x /y', ["--chown=a b"], ["x", "/y"]),
    ("COPY --chown='' x /y", ["--chown="], ["x", "/y"]),
    ("COPY --a=x\\ y z /w", ["--a=x y"], ["z", "/w"]),
    ("COPY -x a /b", [], ["-x", "a", "/b"]),
    ("RUN --mount=type=cache,target=/c --network=none make",
     ["--mount=type=cache,target=/c", "--network=none"], ["make"]),
    ("RUN --only-flags", ["--only-flags"], []),
])
def test_flags(text: str, flags: list[str], args: list[str]) -> None:
    ins = only(text + "\n")
    assert (ins.flags, ins.args) == (flags, args)


def test_flags_dump_as_a_go_list() -> None:
    assert dumped('FROM x\nCOPY --user=me --doit=true foo /tmp/\n')[1] == \
        '(copy ["--user=me" "--doit=true"] "foo" "/tmp/")'


def test_parse_flags_values() -> None:
    ins = only("COPY --from=build --link --chmod=644 --exclude=a --exclude=b x /y\n")
    values = parse_flags(ins, booleans=["link"], strings=["from", "chmod", "chown"],
                         lists=["exclude"])
    assert values == {"from": "build", "link": True, "chmod": "644", "exclude": ["a", "b"]}


@pytest.mark.parametrize(("flag", "message"), [
    ("--form=x", r"Dockerfile:2: unknown flag: --form \(did you mean --from\?\) for COPY"),
    ("--from", r"missing a value on flag: --from"),
    ("--link=", r"missing a value on flag: --link"),
    ("--link=maybe", r"expecting boolean value for flag --link, not: maybe"),
])
def test_parse_flags_errors(flag: str, message: str) -> None:
    ins = only(f"COPY {flag} x /y\n")
    with pytest.raises(DockerfileError, match=message):
        parse_flags(ins, booleans=["link"], strings=["from"])


def test_parse_flags_duplicate_and_boolean_false() -> None:
    assert parse_flags(only("COPY --link=FALSE a b\n"), booleans=["link"]) == {"link": False}
    with pytest.raises(DockerfileError, match="duplicate flag specified: --from"):
        parse_flags(only("COPY --from=a --from=b x /y\n"), strings=["from"])


# ---------------------------------------------------------------------- ONBUILD, HEALTHCHECK

def test_onbuild_holds_its_trigger_as_next() -> None:
    ins = only("ONBUILD COPY --from=x a /b\n")
    assert ins.cmd == "onbuild" and ins.args == []
    assert ins.next is not None
    assert (ins.next.cmd, ins.next.flags, ins.next.args) == ("copy", ["--from=x"], ["a", "/b"])
    assert ins.next.original == "COPY --from=x a /b"
    assert dump(Dockerfile([ins])) == '(onbuild (copy ["--from=x"] "a" "/b"))\n'


def test_onbuild_json_trigger() -> None:
    assert dumped('FROM x\nONBUILD RUN ["echo", "test"]\n')[1] == \
        '(onbuild (run "echo" "test"))'


@pytest.mark.parametrize("trigger", ["ONBUILD RUN x", "FROM y", "MAINTAINER me"])
def test_onbuild_forbidden_triggers(trigger: str) -> None:
    with pytest.raises(DockerfileError, match="Dockerfile:2: .*ONBUILD"):
        parse(f"FROM x\nONBUILD {trigger}\n")


def test_onbuild_unknown_trigger_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="Dockerfile:2: unknown instruction: RUNN"):
        parse("FROM x\nONBUILD RUNN x\n")


@pytest.mark.parametrize(("text", "flags", "args", "json_form"), [
    ("HEALTHCHECK NONE", [], ["NONE"], False),
    ("HEALTHCHECK", [], [], False),
    ("HEALTHCHECK --interval=5s CMD curl -f http://x/ || exit 1", ["--interval=5s"],
     ["CMD", "curl -f http://x/ || exit 1"], False),
    ('HEALTHCHECK --retries=3 CMD ["wget", "-q", "x"]', ["--retries=3"],
     ["CMD", "wget", "-q", "x"], True),
])
def test_healthcheck(text: str, flags: list[str], args: list[str], json_form: bool) -> None:
    ins = only(text + "\n")
    assert (ins.flags, ins.args, ins.json_form) == (flags, args, json_form)


# ---------------------------------------------------------------------- heredocs

def test_run_heredoc() -> None:
    df = parse("FROM x\nRUN <<EOF\necho $HOME\nls\nEOF\nCMD x\n")
    run = df.instructions[1]
    assert run.args == ["<<EOF"]
    assert run.heredocs == [Heredoc("EOF", "echo $HOME\nls\n", expand=True, chomp=False)]
    assert (run.start_line, run.end_line) == (2, 5)
    assert df.instructions[2].start_line == 6


def test_heredoc_body_is_not_parsed_as_instructions_or_comments() -> None:
    run = only("RUN <<EOF\n# not a comment\nFROM not-a-stage \\\nEOF\n")
    assert run.heredocs[0].content == "# not a comment\nFROM not-a-stage \\\n"


def test_chomped_heredoc_keeps_content_and_strips_in_text() -> None:
    run = only("RUN <<-EOT\n\tone\n\t\ttwo\n\tEOT\n")
    heredoc = run.heredocs[0]
    assert heredoc.chomp
    assert heredoc.content == "\tone\n\t\ttwo\n"
    assert heredoc.text == "one\ntwo\n"


@pytest.mark.parametrize(("word", "name", "expand"), [
    ("<<EOF", "EOF", True),
    ("<<'EOF'", "EOF", False),
    ('<<"EOF"', "EOF", False),
    ("<<E'O'F", "EOF", False),
    ("<<EO\\'F", "EO'F", True),
    ("<<'one two'", "one two", False),
])
def test_quoted_delimiter_disables_expansion(word: str, name: str, expand: bool) -> None:
    run = only(f"RUN {word}\nbody\n{name}\n")
    assert [(h.name, h.expand) for h in run.heredocs] == [(name, expand)]


def test_multiple_heredocs_on_one_line() -> None:
    copy = only("COPY <<A <<B /dst/\nbody a\nA\nbody b\nB\n")
    assert [(h.name, h.content) for h in copy.heredocs] == [("A", "body a\n"), ("B", "body b\n")]
    assert copy.args == ["<<A", "<<B", "/dst/"]
    assert copy.end_line == 6


def test_heredoc_with_flags_file_descriptor_and_trailing_words() -> None:
    run = only("RUN --mount=type=cache,target=/c 3<<EOF python3 > out\nprint(1)\nEOF\n")
    assert run.heredocs == [Heredoc("EOF", "print(1)\n", True, False, 3)]


def test_heredoc_delimiter_with_spaces_after_operator() -> None:
    assert only("RUN <<  EOF\nx\nEOF\n").heredocs[0].name == "EOF"


def test_no_heredocs_in_json_form_quotes_or_other_instructions() -> None:
    assert only('RUN ["<<EOF"]\n').heredocs == []
    assert only('RUN "<<EOF"\n').heredocs == []
    df = parse("FROM x\nLABEL a=<<EOF\nENV b=c\n")
    assert [i.cmd for i in df.instructions] == ["from", "label", "env"]


def test_onbuild_trigger_heredoc() -> None:
    ins = only("ONBUILD RUN <<EOF\necho hi\nEOF\n")
    assert ins.heredocs == [Heredoc("EOF", "echo hi\n", True, False)]
    assert ins.next is not None and ins.next.heredocs == ins.heredocs
    assert ins.end_line == 4


def test_unterminated_heredoc_names_the_instruction_line() -> None:
    with pytest.raises(DockerfileError, match="Dockerfile:2: unterminated heredoc EOF"):
        parse("FROM x\nRUN <<EOF\necho hi\n")


def test_heredoc_word_helper() -> None:
    assert parse_heredoc_word("<<-EOF") == Heredoc("EOF", "", True, True)
    for word in ("EOF", "<<", "<<-", "<EOF", "<<<EOF", "x<<EOF"):
        assert parse_heredoc_word(word) is None


# ---------------------------------------------------------------------- errors

def test_unknown_instruction_names_file_line_and_suggestion() -> None:
    with pytest.raises(DockerfileError) as info:
        parse("FROM x\n\nFORM y\n", filename="sub/Dockerfile.dev")
    assert str(info.value) == "sub/Dockerfile.dev:3: unknown instruction: FORM (did you mean FROM?)"
    assert isinstance(info.value, BuildError)
    assert (info.value.filename, info.value.line) == ("sub/Dockerfile.dev", 3)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "# escape=`\n"])
def test_file_without_instructions_is_an_error(text: str) -> None:
    with pytest.raises(DockerfileError, match="Dockerfile: file with no instructions"):
        parse(text)


def test_error_can_be_located_later() -> None:
    error = DockerfileError("boom")
    assert str(error) == "boom"
    located = error.located("Dockerfile", 7)
    assert type(located) is DockerfileError and str(located) == "Dockerfile:7: boom"


# ---------------------------------------------------------------------- dump

@pytest.mark.parametrize(("value", "quoted"), [
    ("plain", '"plain"'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("\a\b\f\n\r\t\v", '"\\a\\b\\f\\n\\r\\t\\v"'),
    ("\x00\x1b\x7f", '"\\x00\\x1b\\x7f"'),
    ("♥ é 한", '"♥ é 한"'),
    ("\u00a0\u200b", '"\\u00a0\\u200b"'),
    ("\U000e0001", '"\\U000e0001"'),
])
def test_go_quote(value: str, quoted: str) -> None:
    assert go_quote(value) == quoted


def test_dump_format() -> None:
    text = ("FROM scratch\nENV a=b\nHEALTHCHECK --timeout=3s CMD [\"foo\"]\nCMD []\n")
    assert dump(parse(text)) == ('(from "scratch")\n(env "a" "b" "=")\n'
                                 '(healthcheck ["--timeout=3s"] "CMD" "foo")\n(cmd)\n')


def test_seed_example() -> None:
    df = parse('FROM base\nMAINTAINER qingbing "qingbing@qq.com"\n'
               'RUN mkdir /data && echo "hello world" > /data/hello.txt\nEXPOSE 80\n')
    assert [(i.cmd, i.args) for i in df.instructions] == [
        ("from", ["base"]),
        ("maintainer", ['qingbing "qingbing@qq.com"']),
        ("run", ['mkdir /data && echo "hello world" > /data/hello.txt']),
        ("expose", ["80"]),
    ]


def test_onbuild_expression_round_trips_with_heredocs() -> None:
    ins = only("onbuild RUN <<EOF\necho $HOME\nEOF\n")
    expression = onbuild_expression(ins)
    assert expression == "RUN <<EOF\necho $HOME\nEOF"
    trigger = parse(expression).instructions[0]
    assert ins.next is not None
    assert (trigger.cmd, trigger.args, trigger.heredocs) == ("run", ins.next.args, ins.heredocs)


def test_onbuild_expression_without_heredocs() -> None:
    assert onbuild_expression(only("ONBUILD   COPY --from=x a /b\n")) == "COPY --from=x a /b"
