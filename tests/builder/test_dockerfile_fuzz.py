"""Random Dockerfile text: the parser either succeeds or raises DockerfileError, never anything
else, and what it returns is consistent (lines in order, every instruction known)."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_isobox.builder.dockerfile import INSTRUCTIONS, DockerfileError, dump, parse

_KEYWORDS = sorted(k.upper() for k in INSTRUCTIONS) + ["ONBUILD RUN", "FROM a AS", "# escape=`",
                                                        "# syntax=x", "#"]
_FRAGMENTS = st.sampled_from([
    " ", "\t", "\\", "`", "\n", "\r\n", "'", '"', "[", "]", ",", "=", "--", "--from=x", "<<EOF",
    "<<-'EOF'", "EOF", "\tEOF", "$A", "${A:-b}", "#", "a", "b c", '["a"]', "[1]", "é", "\ufeff",
])
_LINE = st.tuples(st.sampled_from(_KEYWORDS), st.lists(_FRAGMENTS, max_size=6)).map(
    lambda t: t[0] + " " + "".join(t[1]))


@settings(database=None, max_examples=300)
@given(st.lists(_LINE, max_size=8).map("\n".join))
def test_parser_fails_only_with_dockerfile_error(text: str) -> None:
    try:
        df = parse(text)
    except DockerfileError as e:
        assert str(e).startswith("Dockerfile:")
        return
    lines = [(i.start_line, i.end_line) for i in df.instructions]
    assert all(start <= end for start, end in lines)
    assert all(a[1] < b[0] for a, b in pairwise(lines))
    assert all(i.cmd in INSTRUCTIONS for i in df.instructions)
    assert dump(df).endswith("\n")
