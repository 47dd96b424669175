"""BuildKit's own parser cases (vendored in buildkit-parser/, see its README): every positive
case must dump exactly to its `result`, every negative case must fail, line numbers must match."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_isobox.builder.dockerfile import DockerfileError, dump, parse

CASES = Path(__file__).resolve().parent / "buildkit-parser"


def _case_dirs(kind: str) -> list[str]:
    directory = CASES / kind
    return sorted(p.name for p in directory.iterdir() if p.is_dir())  # missing: collection fails


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


@pytest.mark.parametrize("case", _case_dirs("testfiles"))
def test_positive_case_dumps_to_result(case: str) -> None:
    directory = CASES / "testfiles" / case
    df = parse(_read(directory / "Dockerfile"), filename=f"{case}/Dockerfile")
    assert dump(df) == _read(directory / "result")


@pytest.mark.parametrize("case", _case_dirs("testfiles-negative"))
def test_negative_case_fails(case: str) -> None:
    path = CASES / "testfiles-negative" / case / "Dockerfile"
    with pytest.raises(DockerfileError) as info:
        parse(_read(path), filename=str(path))
    assert str(path) in str(info.value)


def test_line_numbers() -> None:
    df = parse(_read(CASES / "testfile-line" / "Dockerfile"))
    spans = [(ins.start_line, ins.end_line) for ins in df.instructions]
    assert spans == [(5, 5), (11, 12), (17, 31)]
    assert (spans[0][0], spans[-1][1]) == (5, 31)


def test_every_case_directory_is_found() -> None:
    """Guards against the parametrization silently collecting nothing."""
    assert len(_case_dirs("testfiles")) >= 30
    assert len(_case_dirs("testfiles-negative")) >= 4
