"""Which builder a docker-engine build takes (build_choice), against the real daemon: heredocs
build as on the native engine, BuildKit's trace read as steps, the choice said in the output."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pytest_isobox.engine import BuildError, BuildStep, ContainerSpec
from tests.conftest import needs_docker, needs_root
from tests.docker.conftest import Made

pytestmark = needs_docker

_HEREDOCS = """\
FROM {base}
WORKDIR /work
ENV GREETING=hello
RUN <<EOF
echo one > /one
echo "$GREETING two" >> /one
chmod 0600 /one
EOF
COPY <<EOF /etc/motd
hi from heredoc $GREETING
EOF
COPY --chmod=0640 <<-EOT script.sh
\t#!/bin/sh
\techo "from script"
\tEOT
RUN cat <<A > /cat.txt && sh script.sh > /script.out
home is $HOME
A
CMD ["cat", "/one"]
"""
_SHOW = ["sh", "-c", ("for f in /one /etc/motd /cat.txt /work/script.sh /script.out; do "
                      "stat -c '%n %a %u:%g %s' $f; cat $f; done")]


def _context(tmp_path: Path, text: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(text)
    return ctx


def _output(engine: object, image: str, command: list[str]) -> bytes:
    """What `command` prints in a container of `image` on `engine`; the container removed."""
    state = engine.create(ContainerSpec(image=image, command=command,  # type: ignore[attr-defined]
                                        network_mode="none"))
    try:
        engine.start(state.id)  # type: ignore[attr-defined]
        code = engine.wait(state.id, timeout=60)  # type: ignore[attr-defined]
        out = b"".join(d for _, d in engine.logs(state.id))  # type: ignore[attr-defined]
        assert code == 0, out
        return out
    finally:
        engine.remove(state.id, force=True)  # type: ignore[attr-defined]


def _set(config: dict) -> dict:
    """The fields set (the daemon's inspect and the native store differ in empty ones)."""
    return {k: v for k, v in config.items() if v not in (None, "", [], {}, False)}


@needs_root
def test_heredoc_dockerfile_builds_alike_on_both_engines(
        made: Made, tmp_path: Path, isobox_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same heredoc Dockerfile on the native engine and on the docker engine gives the same
    files (content, mode, owner, size) and config; the docker engine says which builder it
    took: BuildKit where the daemon's has heredocs, else isobox's here, then loaded (a native
    store under this test's ISOBOX_HOME: nothing of the machine's)."""
    from pytest_isobox.native.engine import NativeEngine

    monkeypatch.delenv("ISOBOX_DOCKER_BUILDER", raising=False)
    ctx = _context(tmp_path, _HEREDOCS.format(base=made.image))
    native = NativeEngine(home=tmp_path / "native-home")
    try:
        made.engine.save_images([made.image], tmp_path / "base.tar")  # the same FROM image
        native.load_images(tmp_path / "base.tar")
        native_image = native.build(ctx)
        native_files = _output(native, native_image, _SHOW)
        native_config = native.image_inspect(native_image).config["config"]
    finally:
        native.close()
    notes: list[str] = []
    steps: list[BuildStep] = []
    tag = f"isobox-test/heredocs:{uuid.uuid4().hex[:10]}"
    made.images.append(tag)
    image_id = made.engine.build(ctx, tag=tag, on_note=notes.append, on_step=steps.append)
    buildkit = made.engine._daemon_builders().buildkit_heredocs
    expected = "the daemon's BuildKit" if buildkit else "isobox's builder here"
    assert len(notes) == 1 and notes[0].startswith(f"building with {expected}"), notes
    assert "heredocs (lines 4, 9, 12, 16)" in notes[0]
    assert made.engine.image_inspect(tag).id == image_id
    assert [s.instruction.split()[0] for s in steps][-3:] == ["COPY", "RUN", "CMD"]
    docker_files = _output(made.engine, tag, _SHOW)
    assert docker_files == native_files
    assert b"/one 600 0:0" in docker_files and b"hello two" in docker_files
    assert b"/work/script.sh 640 0:0" in docker_files and b"from script\n" in docker_files
    docker_config = made.engine.image_inspect(tag).config["config"]
    assert _set(docker_config) == _set(native_config)
    again: list[BuildStep] = []
    assert made.engine.build(ctx, tag=tag, on_step=again.append) == image_id  # cached
    assert again and all(s.cached for s in again if not s.instruction.startswith("FROM"))


def test_buildkit_on_the_daemon_when_asked(made: Made, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """ISOBOX_DOCKER_BUILDER=buildkit: `POST /build?version=2`, its trace read as steps (cached
    the second time), a failing RUN named with its output."""
    if made.engine._daemon_builders().podman:
        pytest.skip("Podman's service has no BuildKit")
    monkeypatch.setenv("ISOBOX_DOCKER_BUILDER", "buildkit")
    marker = uuid.uuid4().hex
    ctx = _context(tmp_path, "\n".join([
        f"FROM {made.image}", "COPY a.txt /a.txt",
        f"RUN echo {marker} > /b.txt && echo said {marker}",
        "ARG CODE", "RUN echo failing; exit ${CODE:-0}"]) + "\n")
    (ctx / "a.txt").write_text("from the context\n")
    notes: list[str] = []
    steps: list[BuildStep] = []
    tag = f"isobox-test/buildkit:{uuid.uuid4().hex[:10]}"
    made.images.append(tag)
    image_id = made.engine.build(ctx, tag=tag, on_note=notes.append, on_step=steps.append)
    assert notes == ["building with the daemon's BuildKit (ISOBOX_DOCKER_BUILDER)"]
    assert image_id.startswith("sha256:") and made.engine.image_inspect(tag).id == image_id
    by_name = {s.instruction.split()[0] + str(s.index): s for s in steps}
    assert set(by_name) == {"FROM1", "COPY2", "RUN3", "RUN4"}, steps
    assert {s.total for s in steps} == {4}  # ARG is no step of BuildKit
    assert f"said {marker}" in by_name["RUN3"].output
    assert _output(made.engine, tag, ["cat", "/a.txt", "/b.txt"]) == \
        f"from the context\n{marker}\n".encode()
    again: list[BuildStep] = []
    assert made.engine.build(ctx, tag=tag, on_step=again.append) == image_id
    assert again and all(s.cached for s in again if not s.instruction.startswith("FROM"))
    with pytest.raises(BuildError) as failure:
        made.engine.build(ctx, buildargs={"CODE": "3"}, tag="isobox-test/never:bk")
    message = str(failure.value)
    assert message.startswith("Dockerfile: [4/4] RUN echo failing; exit 3 failed: "), \
        message
    assert "exit code: 3" in message and "failing" in message.split("last output:")[1]


def test_cli_build_says_which_builder(made: Made, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISOBOX_DOCKER_BUILDER", raising=False)
    ctx = _context(tmp_path, f"FROM {made.image}\nRUN echo plain > /plain\n")
    cli = [sys.executable, "-m", "pytest_isobox.cli", "--engine", "docker", "build"]
    quiet = subprocess.run([*cli, "-q", str(ctx)], capture_output=True, text=True, check=False,
                           timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    made.images.append(quiet.stdout.strip())
    assert quiet.stdout.strip().startswith("sha256:")  # -q: the id alone
    done = subprocess.run([*cli, str(ctx)], capture_output=True, text=True, check=False,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("building with the daemon's ") and first.endswith(
        "(the daemon's default builder)"), done.stdout
