"""run --pull missing|always|never against a registry on loopback, on both engines: the
local image is kept (missing), replaced by the registry's (always), or nothing is pulled
(never: one line, 125)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.conftest import needs_root
from tests.registry.servers import Registry, have_registry

pytestmark = [needs_root,
              pytest.mark.skipif(not have_registry(), reason="docker-registry is not installed")]


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.delenv("ISOBOX_OFFLINE", raising=False)  # loopback only
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    server = Registry(tmp_path / "registry").start()
    try:
        yield server
    finally:
        server.stop()


def _build(cli: Cli, ref: str, word: str, context: Path) -> None:
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(f"FROM {cli.image}\nRUN echo {word} > /version\n")
    cli("build", "-q", "-t", ref, str(context))


def test_run_pull_policies(cli: Cli, registry: Registry, tmp_path: Path) -> None:
    ref = f"{registry.netloc}/isobox-cli/pulled:1"
    cli.made.append(("image", ref))
    _build(cli, ref, "two", tmp_path / "two")
    cli("push", "-q", ref)                     # the registry has "two"
    _build(cli, ref, "one", tmp_path / "one")  # the local tag: "one"
    version = ("cat", "/version")
    assert cli.out("run", "--rm", "--pull", "missing", ref, *version) == "one\n"
    assert cli.out("run", "--rm", "--pull", "never", ref, *version) == "one\n"
    assert cli.out("run", "--rm", "--pull", "always", ref, *version) == "two\n"
    assert cli.out("run", "--rm", ref, *version) == "two\n"  # the pulled one is local now
    digest = cli.out("images", "--digests", "--format", "{{.Digest}}", ref).strip()
    assert digest.startswith("sha256:") and len(digest) == 71  # a pulled image's RepoDigest
    assert f"{ref.rsplit(':', 1)[0]}@{digest}" in json.loads(
        cli.out("image", "inspect", ref))[0]["RepoDigests"]
    cli("rmi", "-f", ref)
    never = cli("run", "--rm", "--pull", "never", ref, *version, check=False)
    assert never.returncode == 125 and never.stderr.decode().count("\n") == 1
    assert cli.out("run", "--rm", "--pull", "missing", ref, *version) == "two\n"
