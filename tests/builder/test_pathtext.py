"""builder/pathtext.py writes a path as pathlib does (the builder names its Dockerfile and
.dockerignore so in errors, without importing pathlib), alone and joined."""

from __future__ import annotations

import itertools
import os
from pathlib import Path, PurePosixPath

from pytest_isobox.builder.pathtext import path_text

_PIECES = ("/", ".", "..", "a", "b.")


def test_a_path_is_written_as_pathlib_writes_it() -> None:
    for n in range(7):
        for pieces in itertools.product(_PIECES, repeat=n):
            text = "".join(pieces)
            assert path_text(text) == str(PurePosixPath(text)) == str(Path(text)), text
    assert path_text(Path("/x/y")) == "/x/y"


def test_a_joined_path_is_written_as_pathlib_joins_it() -> None:
    for n, m in itertools.product(range(4), repeat=2):
        for left in map("".join, itertools.product(_PIECES, repeat=n)):
            for right in map("".join, itertools.product(_PIECES, repeat=m)):
                assert path_text(os.path.join(left, right)) == str(Path(left) / right), \
                    (left, right)
