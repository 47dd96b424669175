"""Bad input gets typed, one-line errors, never a traceback: random argument lists to the CLI
parser, random bytes to `load` and as a Dockerfile (through split_stages too); and the cases
found by hand (ARG without a name, non-UTF-8 Dockerfile, load of a file that is no archive)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_isobox.builder.dockerfile import DockerfileError, parse
from pytest_isobox.builder.stages import split_stages
from pytest_isobox.cli.arguments import UsageError
from pytest_isobox.cli.arguments import parser as cli_parser
from pytest_isobox.engine import IsoboxError
from pytest_isobox.gotemplate import TemplateError
from pytest_isobox.gotemplate import parse as parse_template
from tests.cli.conftest import Cli
from tests.conftest import needs_root

_WORDS = st.sampled_from([
    "run", "create", "ps", "images", "inspect", "network", "volume", "system", "image", "build",
    "logs", "exec", "stats", "top", "cp", "-a", "-f", "-q", "-t", "-n", "--filter", "--format",
    "--cpus", "abc", "-e", "=x", "--tail", "all", "-1", "--type", "container", "ls", "rm",
    "create", "prune", "--no-such-flag", "{{.Name", "-", "--", "busybox", "",
])


@settings(database=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_WORDS, st.text(max_size=8)), max_size=7))
def test_cli_parser_raises_only_usage_errors(argv: list[str]) -> None:
    parser = cli_parser()
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            parser.parse_args(argv)
    except UsageError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("isobox")
    except SystemExit as exc:  # --help, --version: printed, then exit 0
        assert exc.code == 0


@settings(database=None, max_examples=200)
@given(st.text(max_size=60))
def test_templates_raise_only_template_errors(source: str) -> None:
    try:
        parse_template(source).render({"A": {"B": [1, "x"]}, "Name": "/n"})
    except TemplateError as exc:
        assert "\n" not in str(exc)


@settings(database=None, max_examples=200)
@given(st.binary(max_size=300))
def test_dockerfile_bytes_raise_only_dockerfile_errors(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        split_stages(parse(text))
    except DockerfileError:
        pass


@settings(database=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_load_of_random_bytes_is_a_typed_error(tmp_path: Path, data: bytes) -> None:
    from pytest_isobox.images.archive import load_archive
    from pytest_isobox.images.store import ImageStore

    archive = tmp_path / "random.tar"
    archive.write_bytes(data)
    store = ImageStore(tmp_path / "store")
    with pytest.raises(IsoboxError):
        load_archive(store, archive)
    assert not store.images()


def test_load_of_a_truncated_real_tar(tmp_path: Path) -> None:
    from pytest_isobox.images.archive import load_archive
    from pytest_isobox.images.store import ImageStore

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = 5000
        tar.addfile(info, io.BytesIO(b"[" * 5000))
    (tmp_path / "cut.tar").write_bytes(buf.getvalue()[:3000])
    with pytest.raises(IsoboxError):
        load_archive(ImageStore(tmp_path / "store"), tmp_path / "cut.tar")




@needs_root
@pytest.mark.parametrize(("dockerfile", "named"), [
    (b"FROM {image}\nARG\n", b"Dockerfile:2: ARG requires at least one argument"),
    (b"FROM {image}\nARG =x\n", b"Dockerfile:2: ARG '=x' has no name"),
    (b"FROM {image}\nRUN echo \xff\xfe\n", b"Dockerfile:2: not UTF-8 text"),
])
def test_bad_dockerfiles_one_line_nothing_tagged(native: Cli, tmp_path: Path, dockerfile: bytes,
                                                 named: bytes) -> None:
    (tmp_path / "Dockerfile").write_bytes(dockerfile.replace(b"{image}", native.image.encode()))
    tag = native.name("image") + ":bad"
    done = native("build", "-t", tag, str(tmp_path), check=False)
    assert done.returncode == 1
    assert named in done.stderr and done.stderr.count(b"\n") == 1
    assert b"Traceback" not in done.stderr
    assert native("image", "inspect", tag, check=False).returncode == 1


@needs_root
def test_load_of_a_file_that_is_no_archive(native: Cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar\n" * 40)
    done = native("load", "-i", str(junk), check=False)
    assert done.returncode == 1
    assert done.stderr.decode() == f"isobox: load: {junk} is not a tar archive (ReadError)\n"


def test_a_verb_whose_engine_cannot_open_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "--engine", "docker",
                           "-H", "unix:///nonexistent/docker.sock", "ps"],
                          capture_output=True, check=False)
    assert done.returncode == 125 and done.stderr.count(b"\n") == 1
