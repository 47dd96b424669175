"""ps and images as Docker prints them (columns, --filter, --format, -n/-l/-s, --no-trunc,
--digests, REPOSITORY[:TAG]), run's exit statuses and one-line usage errors (--help on every
verb: test_help.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli.conftest import Cli
from tests.conftest import needs_root

pytestmark = needs_root


def test_ps_columns_and_command(cli: Cli) -> None:
    name = cli.run_d(command=("sh", "-c", "sleep 1000; echo a long command line"))
    lines = cli.out("ps").splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    [row] = [line for line in lines if line.endswith(name)]
    assert '"sh -c sleep 1000; e…"' in row and " ago " in row and "Up " in row
    full = cli.out("ps", "--no-trunc", "--filter", f"name={name}", "--format", "{{.Command}}")
    assert full == '"sh -c sleep 1000; echo a long command line"\n'


def test_ps_filters(cli: Cli) -> None:
    up = cli.run_d("-l", "role=db")
    gone = cli.run_d("-l", "role=web", command=("sh", "-c", "exit 3"))
    cli("wait", gone)
    fmt = ("--format", "{{.Names}}")

    def names(*filters: str) -> set[str]:
        args = [a for f in filters for a in ("--filter", f)]
        return set(cli.out("ps", "-a", *args, *fmt).split()) & {up, gone}

    assert names("status=running") == {up}
    assert names("status=exited") == {gone}
    assert set(cli.out("ps", "--filter", "status=exited", *fmt).split()) & {up, gone} == {gone}
    assert names("exited=3") == {gone} and names("exited=0") == set()
    assert names("label=role") == {up, gone}
    assert names("label=role=db") == {up}
    assert names(f"name={up}") == {up}
    assert names("status=running", "status=exited") == {up, gone}  # one key: either value
    assert names("status=running", "label=role=web") == set()  # two keys: both
    cid = cli.out("inspect", "-f", "{{.Id}}", up).strip()
    assert names(f"id={cid[:8]}") == {up}
    assert names(f"ancestor={cli.image}") == {up, gone}
    bad = cli("ps", "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "colour" in bad.stderr.decode()
    assert bad.stderr.decode().count("\n") == 1


def test_ps_last_latest_quiet_size_and_table_format(cli: Cli) -> None:
    first = cli.run_d()
    second = cli.run_d(command=("true",))
    cli("wait", second)
    assert cli.out("ps", "-l", "--format", "{{.Names}}").split() == [second]
    assert cli.out("ps", "-n", "2", "--format", "{{.Names}}").split() == [second, first]
    ids = cli.out("ps", "-a", "-q", "--no-trunc").split()
    assert all(len(i) == 64 for i in ids) and len(ids) >= 2
    table = cli.out("ps", "--filter", f"name={first}", "--format",
                    "table {{.Names}}\\t{{.State}}").splitlines()
    assert table[0].split() == ["NAMES", "STATE"]
    assert table[1].split() == [first, "running"]
    sized = cli.out("ps", "-s", "--filter", f"name={first}", "--format", "{{.Size}}")
    assert "virtual" in sized
    as_json = json.loads(cli.out("ps", "--filter", f"name={first}", "--format", "json"))
    assert as_json["Names"] == first and as_json["State"] == "running"


def test_images_listing(cli: Cli) -> None:
    tag = f"isobox-cli-extra/{cli.name('image').removeprefix('isobox-cli-')}:v2"
    cli.made[-1] = ("image", tag)
    cli("tag", cli.image, tag)
    repo = tag.rsplit(":", 1)[0]
    lines = cli.out("images", repo).splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert len(lines) == 2 and lines[1].split()[:2] == [repo, "v2"]
    assert " ago " in lines[1] or "About" in lines[1]
    assert cli.out("images", tag, "--format", "{{.Repository}}:{{.Tag}}") == f"{tag}\n"
    assert cli.out("images", "--filter", "reference=isobox-cli-extra/*",
                   "--format", "{{.Tag}}") == "v2\n"
    assert cli.out("images", "--filter", "reference=isobox-cli-extra/*:v3") == \
        "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n"
    digests = cli.out("images", "--digests", tag).splitlines()
    assert digests[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    image_id = cli.out("image", "inspect", "-f", "{{.Id}}", tag).strip()
    assert cli.out("images", "-q", tag).strip() == image_id.removeprefix("sha256:")[:12]
    assert tag not in cli.out("images", "--filter", "dangling=true")


@pytest.mark.parametrize(("command", "status"), [
    (("nosuchcommand",), 127),
    (("/etc/passwd",), 126),
    (("sh", "-c", "exit 9"), 9),
])
def test_run_exit_statuses_and_nothing_left(cli: Cli, command: tuple[str, ...],
                                            status: int) -> None:
    name = cli.name()
    done = cli("run", "--name", name, cli.image, *command, check=False)
    assert done.returncode == status
    if status in (126, 127):
        err = done.stderr.decode()
        assert err.count("\n") == 1 and "Traceback" not in err
        assert cli("inspect", "--type", "container", name, check=False).returncode == 1


def test_run_of_a_missing_image_is_125(cli: Cli) -> None:
    done = cli("run", "--rm", "isobox-test/no-such-image:1", "true", check=False)
    assert done.returncode == 125 and done.stderr.decode().count("\n") == 1


@pytest.mark.parametrize("argv", [
    ["run", "--cpus", "abc", "busybox"],
    ["run"],
    ["ps", "--bogus"],
    ["network", "create"],
    ["nosuchverb"],
])
def test_usage_errors_are_one_line_and_125(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest_isobox.cli", *argv],
                          capture_output=True, check=False)
    assert done.returncode == 125
    err = done.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("isobox"), err
    assert done.stdout == b""
