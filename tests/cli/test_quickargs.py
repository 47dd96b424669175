"""The read-only verbs' hand parser (cli/quickargs.py) gives argparse's namespace for what it
takes, and hands everything else (help, errors, unusual forms) to argparse."""

from __future__ import annotations

import pytest

from pytest_isobox.cli.arguments import UsageError, parser
from pytest_isobox.cli.quickargs import parse

TAKEN = [
    ["ps"], ["ps", "-a"], ["ps", "-a", "-q", "--no-trunc", "-s", "-l"],
    ["ps", "--all", "--quiet", "--size", "--latest"], ["ps", "-n", "3"], ["ps", "--last=2"],
    ["ps", "-f", "status=exited", "--filter", "name=x", "--filter=label=a=b"],
    ["ps", "--format", "{{.ID}} {{.Names}}"], ["ps", "--format=table {{.ID}}"],
    ["ps", "--format", ""], ["ps", "-n", "+4"],
    ["--home", "/h", "ps"], ["--home=/h", "--engine", "docker", "ps", "-a"],
    ["-H", "unix:///x.sock", "--engine=docker", "images"], ["-Hunix:///y", "ps"],
    ["--engine=", "ps"],
    ["images"], ["images", "-a", "-q", "--digests", "--no-trunc", "busybox"],
    ["images", "--format", "{{.Repository}}", "-f", "dangling=true"], ["image", "ls", "-q"],
    ["image", "ls", "busy*"], ["inspect", "c1"], ["inspect", "c1", "c2", "--type", "image"],
    ["inspect", "-f", "{{.Id}}", "-s", "c1", "c2", "c3"], ["inspect", "--type=volume", "v"],
    ["image", "inspect", "busybox"], ["image", "inspect", "--format", "{{.Id}}", "a", "b"],
    ["logs", "c"], ["logs", "-f", "-t", "-n", "5", "c"], ["logs", "c", "--tail", "all"],
    ["logs", "--since", "10m", "--until=2020-01-01", "c"], ["port", "c"], ["port", "c", "80"],
    ["port", "c", "80/udp"], ["network", "ls"], ["network", "ls", "-q", "--no-trunc"],
    ["network", "ls", "--filter", "driver=bridge", "--format", "{{.Name}}"],
    ["volume", "ls"], ["volume", "ls", "-q", "-f", "name=a", "--format", "{{.Name}}"],
    ["ps", "-a", "-a"], ["ps", "--format", "a", "--format", "b"], ["logs", "", "-t"],
    ["build", "."], ["build", "-q", "-t", "app", "ctx"], ["build", "ctx", "-t", "a", "-t", "b:1"],
    ["build", "-f", "Dockerfile.x", "--build-arg", "A=1", "--build-arg=B", "--label", "l=v",
     "--iidfile", "/tmp/id", "--target", "t", "--no-cache", "--network", "host", "."],
    ["build", "--progress", "plain", "--quiet", "--tag=x", "--file=F", "ctx"],
    ["--home", "/h", "build", "--progress=quiet", "ctx"],
    ["rm", "c"], ["rm", "-f", "c1", "c2"], ["rm", "--force", "-v", "c"],
    ["run", "busybox"], ["run", "--rm", "busybox", "true"], ["run", "-d", "busybox", "sleep", "60"],
    ["create", "--name", "c", "busybox"], ["--home", "/h", "run", "--rm", "busybox"],
    ["run", "--name=c", "-e", "A=1", "--env", "B=2", "-p", "127.0.0.1::80", "-v", "/a:/b",
     "busybox", "ls", "-la", "--rm", "-e", "X"],
    ["run", "-h", "host", "-m", "64m", "--cpus", "1.5", "-c", "512", "--pids-limit", "10",
     "--read-only", "--cap-add", "NET_ADMIN", "--network", "n", "--net=m", "-a", "STDOUT",
     "--health-retries", "3", "--stop-timeout", "2.5", "--init", "busybox"],
    ["run", "-w", "/w", "--entrypoint", "", "-u", "1:1", "-l", "a=b", "busybox", "-x"],
]
LEFT_TO_ARGPARSE = [
    ["ps", "-h"], ["ps", "--help"], ["ps", "-aq"], ["ps", "--al"], ["ps", "-n", "x"],
    ["ps", "-n"], ["ps", "-fstatus=exited"], ["ps", "--all=1"], ["ps", "x"], ["ps", "--"],
    ["ps", "-n", "-1"], ["ps", "--format", "-x"], ["logs"], ["logs", "a", "b"],
    ["logs", "-"], ["logs", "c", "-x"], ["inspect"], ["inspect", "--type", "thing", "x"],
    ["inspect", "a", "-s", "b"], ["port"], ["port", "a", "b", "c"], ["port", "a", "-t", "b"],
    ["network"], ["network", "rm", "x"], ["volume", "create"], [],
    ["-v"], ["--version"], ["-h"], ["--eng", "docker", "ps"], ["--home"], ["--home", "-x"],
    ["-H=unix:///x", "ps"], ["image"], ["image", "rm", "x"], ["images", "a", "b"],
    ["build"], ["build", "-"], ["build", "--pull", "."], ["build", "--pull=always", "."],
    ["build", "--pull", "never", "."], ["build", "--progress", "fancy", "."], ["build", "a", "b"],
    ["build", "-qt", "x", "."], ["build", "-h"], ["build", "-t"], ["build", "--no-cache=1", "."],
    ["rm"], ["rm", "-fv", "c"], ["run"], ["run", "--rm"], ["run", "-it", "busybox"], ["run", "--help"], ["run", "--de", "b"],
    ["run", "--cpus", "x", "b"], ["run", "--cpus", "-1", "b"], ["run", "--rm=1", "b"],
    ["run", "--sig-proxy=false", "b"], ["run", "--pull", "never", "b"], ["run", "-eA=1", "b"],
    ["run", "--", "b"], ["run", "b", "--", "x"], ["run", "-a", "tty", "b"], ["create", "-x", "b"],
    ["run", "--name", "-x", "b"], ["run", "-", "b"], ["run", "--health-retries", "x", "b"],
]


def _argparse(argv: list[str]) -> dict:
    found = vars(parser(None).parse_args(argv))
    found.pop("group_help", None)  # (`network`'s own parser, which `network ls` never reads)
    return found


@pytest.mark.parametrize("argv", TAKEN, ids=" ".join)
def test_quick_namespace_is_argparse_s(argv: list[str]) -> None:
    quick = parse(argv)
    assert quick is not None
    assert vars(quick) == _argparse(argv)


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE, ids=" ".join)
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert parse(argv) is None
    try:  # (argparse may take it or refuse it: the point is it is argparse's to say)
        _argparse(argv)
    except (UsageError, SystemExit):
        pass
