"""The `isobox` command in real processes, on the native engine and (where dockerd answers) the
docker engine; everything a test makes is removed at teardown, whatever the outcome."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import docker_available


def isobox(*args: str, check: bool = True, input: bytes | None = None, timeout: float = 60,
           engine: str = "native") -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "--engine", engine, *args],
                          check=False, capture_output=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"isobox {' '.join(args)} -> {proc.returncode}\n"
                             f"{proc.stdout.decode()}\n{proc.stderr.decode()}")
    return proc


class Cli:
    """One engine through the CLI, and what a test made through it (removed at teardown)."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.image = ""
        self.made: list[tuple[str, str]] = []  # (kind, name), removed in reverse

    def __call__(self, *args: str, **kw: object) -> subprocess.CompletedProcess:
        return isobox(*args, engine=self.engine, **kw)  # type: ignore[arg-type]

    def out(self, *args: str, **kw: object) -> str:
        return self(*args, **kw).stdout.decode()

    def name(self, kind: str = "container") -> str:
        name = f"isobox-cli-{uuid.uuid4().hex[:10]}"
        self.made.append((kind, name))
        return name

    def run_d(self, *args: str, command: tuple[str, ...] = ("sleep", "1000")) -> str:
        name = self.name()
        self("run", "-d", "--name", name, *args, self.image, *command)
        return name

    def cleanup(self) -> None:
        removers = {"container": ("rm", "-f"), "network": ("network", "rm"),
                    "volume": ("volume", "rm", "-f"), "image": ("rmi", "-f")}
        for kind, name in reversed(self.made):
            isobox(*removers[kind], name, check=False, engine=self.engine)


@pytest.fixture
def native(busybox_rootfs: Path, isobox_home: Path) -> Iterator[Cli]:
    cli = Cli("native")
    cli.image = "busybox:cli"
    cli("import", str(busybox_rootfs), cli.image)
    yield cli
    cli.cleanup()


@pytest.fixture(scope="session")
def docker_image(busybox_rootfs: Path) -> Iterator[str]:
    if not docker_available():
        pytest.skip("no Docker daemon answers")
    ref = f"isobox-test/busybox:cli{uuid.uuid4().hex[:8]}"
    isobox("import", str(busybox_rootfs), ref, engine="docker")
    yield ref
    isobox("rmi", "-f", ref, engine="docker", check=False)


@pytest.fixture
def dockercli(docker_image: str) -> Iterator[Cli]:
    cli = Cli("docker")
    cli.image = docker_image
    yield cli
    cli.cleanup()


@pytest.fixture(params=["native", "docker"])
def cli(request: pytest.FixtureRequest) -> Cli:
    """The same test on both engines."""
    return request.getfixturevalue("native" if request.param == "native" else "dockercli")
