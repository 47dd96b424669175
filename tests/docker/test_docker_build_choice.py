"""Pure logic of the docker engine's builds: which builder, and BuildKit's trace decoded."""

from __future__ import annotations

import base64

import pytest

from pytest_isobox.docker.build_choice import DaemonBuilders, buildkit_features, choose
from pytest_isobox.docker.buildkit import BuildKitProgress, fields
from pytest_isobox.engine import BuildError, BuildStep

DOCKER_20 = DaemonBuilders("1.41", podman=False, default_builder="", server="Docker 20.10.24")
DOCKER_27 = DaemonBuilders("1.47", podman=False, default_builder="2", server="Docker 27.3.1")
PODMAN = DaemonBuilders("1.41", podman=True, default_builder="", server="Podman 4.3.1")
HEREDOC = "FROM x\nRUN <<EOF\necho hi\nEOF\nONBUILD COPY <<EOF /a\nx\nEOF\n"


def test_features_only_buildkit_builds() -> None:
    assert buildkit_features('FROM x\nRUN ["echo", "<<EOF"]\nCOPY a b\n') == []
    assert buildkit_features(HEREDOC) == ["heredocs (lines 2, 5)"]
    assert buildkit_features("FROM x\nNOSUCH y\n") == []  # the daemon names the error


def test_choice() -> None:
    plain = []
    heredocs = buildkit_features(HEREDOC)
    assert choose(DOCKER_20, plain, {}).builder == "classic"
    assert choose(DOCKER_27, plain, {}).builder == "buildkit"
    assert choose(PODMAN, plain, {}).builder == "classic"
    assert choose(DOCKER_27, heredocs, {}).builder == "buildkit"
    native = choose(DOCKER_20, heredocs, {})
    assert native.builder == "native"
    assert native.note() == (
        "building with isobox's builder here, the image then loaded into the daemon (the "
        "Dockerfile has heredocs (lines 2, 5), which the BuildKit of Docker 20.10.24 (API "
        "1.41) cannot build)")
    assert "Podman's builder cannot" in choose(PODMAN, heredocs, {}).why
    assert choose(DOCKER_20, heredocs, {"ISOBOX_DOCKER_BUILDER": "buildkit"}).builder == \
        "buildkit"
    with pytest.raises(BuildError, match="ISOBOX_DOCKER_BUILDER='kaniko': expected one of "
                                         "classic, buildkit, native"):
        choose(DOCKER_20, plain, {"ISOBOX_DOCKER_BUILDER": "kaniko"})


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _trace(*parts: bytes) -> dict:
    return {"id": "moby.buildkit.trace", "aux": base64.b64encode(b"".join(parts)).decode()}


def test_trace_decoded_into_steps() -> None:
    started, done = _field(1, 100), _field(1, 102) + _field(2, 500_000_000)
    vertex = _field(1, b"sha256:a") + _field(3, b"[2/3] RUN echo hi") + _field(5, started)
    assert list(fields(vertex))[1] == (3, b"[2/3] RUN echo hi")
    steps: list[BuildStep] = []
    output: list[tuple[int, str]] = []
    progress = BuildKitProgress("Dockerfile", steps.append, lambda s, t: output.append(
        (s.index, t)))
    progress.feed(_trace(_field(1, vertex)))
    progress.feed(_trace(_field(3, _field(1, b"sha256:a") + _field(4, b"hi\n"))))
    progress.feed(_trace(_field(1, _field(1, b"sha256:a") + _field(6, done))))
    progress.feed(_trace(_field(1, _field(1, b"sha256:b") + _field(3, b"[internal] load")
                                + _field(4, 1) + _field(6, done))))
    progress.feed({"id": "moby.image.id", "aux": {"ID": "sha256:img"}})
    assert output == [(2, "hi\n")]
    assert steps == [BuildStep(index=2, total=3, instruction="RUN echo hi", cached=False,
                               seconds=2.5, image_id=None, output="hi")]
    assert progress.result() == "sha256:img"
    failing = BuildKitProgress("Dockerfile", None)
    failing.feed(_trace(_field(1, _field(1, b"sha256:c") + _field(3, b"[stage-1 3/3] RUN x")
                                + _field(7, b"exit code: 1"))))
    failing.feed({"errorDetail": {"message": "executor failed: exit code: 1"}})
    with pytest.raises(BuildError, match=r"^Dockerfile: \[stage-1 3/3\] RUN x failed: "
                                         r"executor failed: exit code: 1$"):
        failing.result()


def _stream(progress: object, *lines: str) -> None:
    for line in lines:
        progress.feed({"stream": line + "\n"})  # type: ignore[attr-defined]


def test_classic_and_buildah_streams_read_as_steps() -> None:
    from pytest_isobox.docker.build import BuildProgress

    classic: list[BuildStep] = []
    progress = BuildProgress("Dockerfile", classic.append, lambda short: "sha256:" + short)
    _stream(progress, "Step 1/3 : ARG BASE", "Step 2/3 : FROM x", " ---> 0123456789ab",
            "Step 3/3 : RUN echo hi", " ---> Using cache", " ---> ba9876543210",
            "Successfully built ba9876543210")
    assert [(s.index, s.cached, s.image_id) for s in classic] == [
        (2, False, "sha256:0123456789ab"), (3, True, "sha256:ba9876543210")]  # no ARG step
    assert progress.result() == "ba9876543210"
    buildah: list[BuildStep] = []
    progress = BuildProgress("Dockerfile", buildah.append, lambda short: "sha256:" + short)
    _stream(progress, "STEP 1/3: FROM x", "STEP 2/3: RUN echo said", "said", "--> fd7f7707233",
            "STEP 3/3: EXPOSE 80", "--> Using cache " + "e" * 64, "COMMIT docker.io/x:y",
            "--> e198684db38", "Successfully tagged docker.io/x:y", "e" * 64)
    progress.feed({"aux": {"ID": "sha256:" + "e" * 64}})
    assert [(s.index, s.instruction, s.cached, s.image_id, s.output) for s in buildah] == [
        (1, "FROM x", False, None, ""), (2, "RUN echo said", False, "sha256:fd7f7707233", "said"),
        (3, "EXPOSE 80", True, "sha256:e198684db38", "")]
    assert progress.result() == "sha256:" + "e" * 64
