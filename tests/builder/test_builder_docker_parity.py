"""The same Dockerfile built by isobox and by a real Docker daemon gives the same image config
and the same files (owners, modes, contents)."""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec, Engine
from tests.builder.test_builder import NativeEngine
from tests.builder.test_builder import pytestmark as native_marks
from tests.conftest import needs_docker

pytestmark = [*native_marks, needs_docker, pytest.mark.docker]

BASE = "isobox-parity/busybox:" + uuid.uuid4().hex[:12]  # one per run: parallel runs never meet
DOCKERFILE = f"""\
ARG GREETING=hello
FROM {BASE} AS build
RUN mkdir -p /out/bin && echo tool > /out/bin/tool && chmod 700 /out/bin/tool
FROM {BASE}
COPY --from=build /out /opt/out
COPY --from=build /out/bin/tool /opt/
ADD bundle.tar.gz /opt/bundle/
COPY files/a.txt /tmp
COPY files/a.txt /opt/renamed.txt
COPY --chown=1000:1000 files /opt/files
ARG GREETING
ARG PORT=8080
ENV APP=/srv/app GREETING_COPY=$GREETING
LABEL org.example.title="parity test" org.example.port=$PORT
WORKDIR $APP
COPY --chown=nobody:nogroup files/ ./files/
COPY run.sh /usr/local/bin/
RUN chmod 750 /usr/local/bin/run.sh && echo "$GREETING from $PORT" > greeting.txt
EXPOSE $PORT 53/udp
VOLUME ["/data", "/cache"]
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=5s --start-period=1s --retries=2 CMD cat greeting.txt
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/usr/local/bin/run.sh"]
CMD echo hi
ONBUILD RUN echo child
USER nobody
"""
CONFIG_KEYS = ["Cmd", "Entrypoint", "ExposedPorts", "Healthcheck", "Labels", "OnBuild", "Shell",
               "StopSignal", "User", "Volumes", "WorkingDir"]
PROBE = ["sh", "-c", ("cd /srv/app && find . /usr/local/bin /opt /tmp -exec stat -c "
                     "'%n %u:%g %a %F' {} + | sort && cat greeting.txt files/a.txt")]


def _docker(*args: str, data: bytes | None = None) -> str:
    done = subprocess.run(["docker", *args], input=data, check=True, capture_output=True)
    return done.stdout.decode()


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "files" / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "files" / "a.txt").write_text("a\n")
    (ctx / "files" / "sub" / "b.txt").write_text("b\n")
    (ctx / "run.sh").write_text(textwrap.dedent("#!/bin/sh\nexec \"$@\"\n"))
    (ctx / "run.sh").chmod(0o755)
    subprocess.run(["tar", "-czf", str(ctx / "bundle.tar.gz"), "-C", str(ctx), "files"],
                   check=True)
    return ctx


@pytest.fixture
def docker_image(context: Path, busybox_rootfs: Path) -> Iterator[str]:
    tar = subprocess.run(["tar", "-C", str(busybox_rootfs), "-c", "."], check=True,
                         capture_output=True).stdout
    _docker("import", "-", BASE, data=tar)
    image = subprocess.run(["docker", "build", "-q", "--build-arg", "GREETING=bonjour",
                            str(context)], check=True, capture_output=True, text=True,
                           env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin"}).stdout.strip()
    try:
        yield image
    finally:
        subprocess.run(["docker", "rmi", "-f", image, BASE], check=False, capture_output=True)


@pytest.fixture
def native_image(context: Path, isobox_home: Path, busybox_rootfs: Path) -> Iterator[
        tuple[Engine, str]]:
    engine = NativeEngine(home=isobox_home)
    try:
        engine.import_rootfs(busybox_rootfs, BASE)
        yield engine, engine.build(context, buildargs={"GREETING": "bonjour"})
    finally:
        engine.close()


def test_config_matches_docker(docker_image: str, native_image: tuple[Engine, str]) -> None:
    engine, image = native_image
    ours = engine.image_inspect(image).config["config"]
    theirs = json.loads(_docker("image", "inspect", docker_image))[0]["Config"]
    for key in CONFIG_KEYS:
        assert ours.get(key) == theirs.get(key), key
    env = [e for e in ours.get("Env") or [] if not e.startswith("PATH=")]
    assert env == [e for e in theirs.get("Env") or [] if not e.startswith("PATH=")]


def test_files_match_docker(docker_image: str, native_image: tuple[Engine, str]) -> None:
    engine, image = native_image
    theirs = _docker("run", "--rm", "--user", "root", "--entrypoint", PROBE[0], docker_image,
                     *PROBE[1:])
    state = engine.create(ContainerSpec(image=image, entrypoint=PROBE[:1], command=PROBE[1:],
                                        user="root", network_mode="none"))
    try:
        engine.start(state.id)
        assert engine.wait(state.id, timeout=30) == 0
        ours = b"".join(chunk for _, chunk in engine.logs(state.id)).decode()
    finally:
        engine.remove(state.id, force=True)
    assert ours == theirs
