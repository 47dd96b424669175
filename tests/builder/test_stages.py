"""Splitting a Dockerfile into stages, meta ARGs, targets and the stages a target needs."""

from __future__ import annotations

import pytest

from pytest_isobox.builder.dockerfile import DockerfileError, Instruction, parse
from pytest_isobox.builder.expand import expand
from pytest_isobox.builder.stages import (
    Stage,
    base_stage,
    find_stage,
    required_stages,
    split_stages,
    stage_references,
    target_stage,
)

MULTI = """\
ARG VERSION=1.0
ARG BASE=alpine
FROM --platform=linux/amd64 $BASE AS Build
RUN make
FROM scratch AS assets
COPY x /x
FROM build AS test
COPY --from=assets /x /y
FROM debian
COPY --from=build /out /out
RUN --mount=type=bind,from=1,target=/a true
"""


def stages_of(text: str) -> tuple[list[Instruction], list[Stage]]:
    return split_stages(parse(text))


def test_split_meta_args_and_stages() -> None:
    meta, stages = stages_of(MULTI)
    assert [m.args for m in meta] == [["VERSION=1.0"], ["BASE=alpine"]]
    assert [(s.index, s.name, s.base, s.platform) for s in stages] == [
        (0, "build", "$BASE", "linux/amd64"),
        (1, "assets", "scratch", None),
        (2, "test", "build", None),
        (3, None, "debian", None),
    ]
    assert [[i.cmd for i in s.instructions] for s in stages] == [
        ["run"], ["copy"], ["copy"], ["copy", "run"]]
    assert stages[0].from_instruction.start_line == 3


def test_instructions_after_from_belong_to_the_stage_even_arg() -> None:
    meta, stages = stages_of("FROM a\nARG X\nRUN y\n")
    assert meta == []
    assert [i.cmd for i in stages[0].instructions] == ["arg", "run"]


def test_instruction_before_from_is_an_error() -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: RUN before the first FROM"):
        stages_of("ARG A\nRUN x\nFROM y\n")


def test_no_from_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="no FROM"):
        stages_of("ARG A\n")


@pytest.mark.parametrize(("line", "message"), [
    ("FROM", "FROM requires either one or three arguments"),
    ("FROM a b", "FROM requires either one or three arguments"),
    ("FROM a AS", "FROM requires either one or three arguments"),
    ("FROM a FOR b", "FROM requires either one or three arguments"),
    ("FROM a AS 1st", "invalid name for build stage: '1st'"),
    ("FROM a AS my/stage", "invalid name for build stage"),
    ("FROM --platfrom=x a", "unknown flag: --platfrom"),
])
def test_malformed_from(line: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=f"Dockerfile:2: {message}"):
        stages_of(f"FROM ok\n{line}\n")


def test_duplicate_stage_name_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="Dockerfile:3: duplicate stage name 'b'"):
        stages_of("FROM a AS b\nRUN x\nFROM c AS B\n")


def test_stage_name_is_lowercased_and_as_is_case_insensitive() -> None:
    _, stages = stages_of("FROM a as MyStage\n")
    assert stages[0].name == "mystage"


def test_find_stage_by_name_or_index() -> None:
    _, stages = stages_of(MULTI)
    assert find_stage(stages, "ASSETS") is stages[1]
    assert find_stage(stages, "2") is stages[2]
    assert find_stage(stages, "9") is None
    assert find_stage(stages, "alpine:3") is None


def test_base_stage_is_an_exact_earlier_name() -> None:
    _, stages = stages_of("FROM a AS x\nFROM x AS y\nFROM X\nFROM z AS z2\nFROM y\n")
    assert base_stage(stages, stages[1]) is stages[0]
    assert base_stage(stages, stages[2]) is None          # "X" is an image reference
    assert base_stage(stages, stages[0]) is None
    assert base_stage(stages, stages[4]) is stages[1]
    assert base_stage(stages, stages[3], base="y") is stages[1]


def test_target_stage() -> None:
    _, stages = stages_of(MULTI)
    assert target_stage(stages, None) is stages[-1]
    assert target_stage(stages, "Test") is stages[2]
    with pytest.raises(DockerfileError, match="target stage 'nope' could not be found"):
        target_stage(stages, "nope")


def test_stage_references() -> None:
    _, stages = stages_of(MULTI)
    assert [ref for _, ref in stage_references(stages[3])] == ["build", "1"]
    assert stage_references(stages[1]) == []


def test_required_stages_follow_base_copy_from_and_mounts() -> None:
    _, stages = stages_of(MULTI)
    assert [s.index for s in required_stages(stages, stages[2])] == [0, 1, 2]
    assert [s.index for s in required_stages(stages, stages[1])] == [1]
    assert [s.index for s in required_stages(stages, stages[3])] == [0, 1, 3]


def test_required_stages_with_expanded_references() -> None:
    text = "ARG SRC=one\nFROM a AS one\nFROM b AS two\nFROM ${SRC}\n"
    _, stages = stages_of(text)
    meta_env = {"SRC": "one"}

    def expander(stage: Stage, ins: Instruction, ref: str) -> str:
        return expand(ref, meta_env)

    assert [s.name for s in required_stages(stages, stages[2], expander)] == ["one", None]
    assert [s.name for s in required_stages(stages, stages[2])] == [None]


def test_circular_stage_dependency_is_an_error() -> None:
    _, stages = stages_of("FROM a AS x\nCOPY --from=y / /\nFROM x AS y\n")
    with pytest.raises(DockerfileError, match="circular dependency detected on stage: y -> x -> y"):
        required_stages(stages, stages[1])
