"""Splitting a parsed Dockerfile into build stages, and finding which stages a target needs.

A stage starts at each FROM (`FROM [--platform=p] image [AS name]`) and holds the instructions up
to the next one. Only ARG may come before the first FROM: those are the meta ARGs, visible to
every FROM line. Stage names are lowercased and unique, as in BuildKit.
"""

from __future__ import annotations

import re

from pytest_isobox.builder.dockerfile import Dockerfile, DockerfileError, Instruction, parse_flags
from pytest_isobox.engine.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Stage", "base_stage", "find_stage", "required_stages", "split_stages",
           "stage_references", "target_stage"]

_STAGE_NAME = r"[a-z][a-z0-9\-_.]*\Z"  # (compiled on first use: most FROMs name no stage)


class Stage(Record):
    """One build stage. `base` and `platform` are as written (not yet expanded with the meta
    ARGs); `name` is lowercased, None when the FROM has no `AS name`."""

    _fields = ("index", "name", "base", "platform", "instructions", "from_instruction")

    def __init__(self, index: int, name: str | None, base: str, platform: str | None,
                 instructions: list[Instruction], from_instruction: Instruction) -> None:
        self.index = index
        self.name = name
        self.base = base
        self.platform = platform
        self.instructions = instructions
        self.from_instruction = from_instruction


def split_stages(df: Dockerfile) -> tuple[list[Instruction], list[Stage]]:
    """(the meta ARGs before the first FROM, the stages in order). Raises DockerfileError naming
    the line for an instruction other than ARG before the first FROM, a malformed FROM, or a
    stage name used twice."""
    meta_args: list[Instruction] = []
    stages: list[Stage] = []
    for ins in df.instructions:
        if ins.cmd == "arg":
            _check_arg(df, ins)
        if ins.cmd == "from":
            stage = _stage(df, ins, len(stages))
            if stage.name is not None and any(s.name == stage.name for s in stages):
                raise DockerfileError(f"duplicate stage name {stage.name!r}", df.filename,
                                      ins.start_line)
            stages.append(stage)
        elif stages:
            stages[-1].instructions.append(ins)
        elif ins.cmd == "arg":
            meta_args.append(ins)
        else:
            raise DockerfileError(f"{ins.cmd.upper()} before the first FROM: only ARG may come "
                                  "before FROM", df.filename, ins.start_line)
    if not stages:
        line = df.instructions[-1].end_line if df.instructions else None
        raise DockerfileError("no FROM instruction: a Dockerfile needs at least one stage",
                              df.filename, line)
    return meta_args, stages


def _check_arg(df: Dockerfile, ins: Instruction) -> None:
    """ARG needs a name for each word (BuildKit: "ARG requires at least one argument")."""
    if not ins.args:
        raise DockerfileError("ARG requires at least one argument: ARG name[=default]",
                              df.filename, ins.start_line)
    for word in ins.args:
        if not word.partition("=")[0]:
            raise DockerfileError(f"ARG {word!r} has no name: ARG name[=default]",
                                  df.filename, ins.start_line)


def _stage(df: Dockerfile, ins: Instruction, index: int) -> Stage:
    def fail(message: str) -> DockerfileError:
        return DockerfileError(message, df.filename, ins.start_line)

    args = ins.args
    name: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not re.match(_STAGE_NAME, name):
            raise fail(f"invalid name for build stage: {args[2]!r}, name can't start with a "
                       "number or contain symbols")
    elif len(args) != 1:
        raise fail("FROM requires either one or three arguments: FROM image [AS name]")
    flags = parse_flags(ins, strings=("platform",), filename=df.filename)
    platform = flags.get("platform")
    assert platform is None or isinstance(platform, str)
    return Stage(index, name, args[0], platform, [], ins)


def find_stage(stages: list[Stage], ref: str) -> Stage | None:
    """The stage `ref` names, as `COPY --from` and `RUN --mount=from=` resolve it: a stage name
    (case-insensitively) or a stage index; None when `ref` is an image instead."""
    lowered = ref.lower()
    for stage in stages:
        if stage.name is not None and stage.name == lowered:
            return stage
    if ref.isdecimal() and ref.isascii() and int(ref) < len(stages):
        return stages[int(ref)]
    return None


def base_stage(stages: list[Stage], stage: Stage, base: str | None = None) -> Stage | None:
    """The earlier stage `stage` is built FROM, or None when its base is an image (or scratch).
    `base` is the base name after meta-ARG expansion (default: as written). As in BuildKit only
    an exact stage name counts, and only a stage defined above."""
    base = stage.base if base is None else base
    for earlier in stages[:stage.index]:
        if earlier.name is not None and earlier.name == base:
            return earlier
    return None


def target_stage(stages: list[Stage], target: str | None, filename: str = "Dockerfile") -> Stage:
    """The stage `--target` selects (the last stage when None). Raises DockerfileError if the
    target names no stage."""
    if target is None:
        return stages[-1]
    for stage in stages:
        if stage.name is not None and stage.name == target.lower():
            return stage
    names = ", ".join(repr(s.name) for s in stages if s.name) or "none"
    raise DockerfileError(f"target stage {target!r} could not be found (stages named: {names})",
                          filename)


def stage_references(stage: Stage) -> list[tuple[Instruction, str]]:
    """Every (instruction, reference as written) in `stage` other than its FROM that may name
    another stage: `COPY --from=` and `RUN --mount=...,from=...`. (ONBUILD triggers are not
    listed: they run in the stages built on top of this one.)"""
    refs: list[tuple[Instruction, str]] = []
    for ins in stage.instructions:
        for flag in ins.flags:
            name, _, value = flag.partition("=")
            if ins.cmd == "copy" and name == "--from":
                refs.append((ins, value))
            elif ins.cmd == "run" and name == "--mount":
                refs.extend((ins, v) for k, _, v in (f.partition("=") for f in value.split(","))
                            if k.strip().lower() == "from")
    return refs


def required_stages(stages: list[Stage], target: Stage,
                    expand: Callable[[Stage, Instruction, str], str] | None = None,
                    filename: str = "Dockerfile") -> list[Stage]:
    """The stages `target` needs, itself included, in index order: its base stage and the
    stages its `stage_references` name, transitively; stages it does not need are left out.
    `expand(stage, instruction, text)` gives a reference's value after variable expansion (the
    FROM instruction is passed for the base); without it references are taken as written.
    Raises DockerfileError for a circular dependency between stages."""
    def dependencies(stage: Stage) -> list[Stage]:
        base_text = stage.base
        if expand is not None:
            base_text = expand(stage, stage.from_instruction, base_text)
        found = [base_stage(stages, stage, base_text)]
        for ins, ref in stage_references(stage):
            found.append(find_stage(stages, expand(stage, ins, ref) if expand else ref))
        return [s for s in found if s is not None]

    needed: dict[int, Stage] = {}
    visiting: list[Stage] = []

    def visit(stage: Stage) -> None:
        if stage.index in needed:
            return
        if any(s.index == stage.index for s in visiting):
            cycle = " -> ".join(_stage_label(s) for s in [*visiting, stage])
            raise DockerfileError(f"circular dependency detected on stage: {cycle}", filename,
                                  stage.from_instruction.start_line)
        visiting.append(stage)
        for dependency in dependencies(stage):
            visit(dependency)
        visiting.pop()
        needed[stage.index] = stage

    visit(target)
    return [needed[i] for i in sorted(needed)]


def _stage_label(stage: Stage) -> str:
    return stage.name if stage.name is not None else str(stage.index)
