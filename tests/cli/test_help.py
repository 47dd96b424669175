"""`--help` on every verb and sub-verb of the parser (and serve's own): usage on stdout,
exit 0, no engine opened, nothing on stderr."""

from __future__ import annotations

import contextlib
import io

import pytest

from pytest_isobox.cli import main
from pytest_isobox.cli.arguments import parser
from pytest_isobox.cli.completion import verbs

PATHS = ["", "serve", *verbs(parser())]


def _help(words: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([*words, "--help"])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_every_verb_is_listed() -> None:
    assert {"run", "create", "network connect", "volume inspect", "system df", "image history",
            "completion", "top", "stats"} <= set(PATHS)
    assert len(PATHS) > 60


@pytest.mark.parametrize("path", PATHS)
def test_help(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISOBOX_ENGINE", "no-such-engine")  # help must not need one
    code, out, err = _help(path.split())
    assert code == 0 and err == "", (path, err)
    assert "usage:" in out.lower(), out
    if path and path != "serve" and path != "compose":
        assert f"isobox {path}" in " ".join(out.split()), out
