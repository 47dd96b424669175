"""Pure logic of the runtime: users, argv, signals, path resolution, capabilities, log format."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerError, ContainerSpec, InvalidSpec
from pytest_isobox.native.capabilities import DOCKER_DEFAULT_MASK, capability_mask
from pytest_isobox.native.logs import LogWriter, read_log
from pytest_isobox.native.mounts import secure_join
from pytest_isobox.native.specs import command_line, signal_number
from pytest_isobox.native.users import ExecUser, resolve_user

PASSWD = "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33:www:/var/www:/bin/false\n# comment\n"
GROUP = "root:x:0:\nwww:x:33:\nadm:x:4:web,root\nstaff:x:50:web\n"


@pytest.fixture
def etc(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "passwd").write_text(PASSWD)
    (tmp_path / "group").write_text(GROUP)
    return tmp_path / "passwd", tmp_path / "group"


@pytest.mark.parametrize(("spec", "expected"), [
    (None, ExecUser(0, 0, (0, 4), "/root")),
    ("web", ExecUser(33, 33, (33, 4, 50), "/var/www")),
    ("33", ExecUser(33, 33, (33, 4, 50), "/var/www")),
    ("web:adm", ExecUser(33, 4, (4,), "/var/www")),
    ("web:999", ExecUser(33, 999, (999,), "/var/www")),
    ("1234:5", ExecUser(1234, 5, (5,), "/")),
])
def test_resolve_user_like_docker(etc, spec, expected):
    assert resolve_user(spec, *etc) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("ghost", "unable to find user ghost"), ("web:ghosts", "unable to find group ghosts")])
def test_unknown_names_are_errors(etc, spec, message):
    with pytest.raises(ContainerError, match=message):
        resolve_user(spec, *etc)


def test_command_line_follows_docker():
    image = {"Entrypoint": ["/entry"], "Cmd": ["serve"]}
    assert command_line(image, ContainerSpec("i")) == ["/entry", "serve"]
    assert command_line(image, ContainerSpec("i", command=["x"])) == ["/entry", "x"]
    assert command_line(image, ContainerSpec("i", entrypoint=["sh"])) == ["sh"]
    with pytest.raises(InvalidSpec, match="no command"):
        command_line({"Cmd": ["a"]}, ContainerSpec("i", entrypoint=[]))  # --entrypoint ""


def test_signal_names():
    assert signal_number("SIGTERM") == signal_number("TERM") == signal_number("15") == 15
    with pytest.raises(InvalidSpec, match="SIGNOPE"):
        signal_number("SIGNOPE")


def test_secure_join_never_leaves_the_root(tmp_path: Path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "abs").symlink_to("/")
    (root / "up").symlink_to("../../../..")
    (root / "etc" / "link").symlink_to("/etc")
    assert secure_join(str(root), "/abs/etc/passwd") == f"{root}/etc/passwd"
    assert secure_join(str(root), "/up/x") == f"{root}/x"
    assert secure_join(str(root), "/../../etc/link/hosts") == f"{root}/etc/hosts"


def test_docker_default_capability_mask():
    assert DOCKER_DEFAULT_MASK == 0xA80425FB
    assert capability_mask(["CAP_CHOWN", "kill"]) == 0b100001


def test_log_records_keep_streams_order_and_tail(tmp_path: Path):
    log = tmp_path / "log"
    writer = LogWriter(log)
    for stream, data in ((1, b"a\nb\n"), (2, b"oops\n"), (1, b"c\n")):
        writer.write(stream, data)
    writer.close()
    assert list(read_log(log)) == [("stdout", b"a\nb\n"), ("stderr", b"oops\n"),
                                   ("stdout", b"c\n")]
    assert list(read_log(log, stderr=False, tail=2)) == [("stdout", b"b\n"), ("stdout", b"c\n")]
    assert list(read_log(tmp_path / "missing")) == []
