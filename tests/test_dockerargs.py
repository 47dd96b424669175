"""Docker's argument syntax, parsed once (dockerargs.py) for the CLI, fixtures and server."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_isobox import dockerargs as da
from pytest_isobox.engine import InvalidSpec, MountSpec, NetworkAttachment, PortSpec


def test_env_takes_bare_names_from_the_callers_environment() -> None:
    assert da.parse_env(["A=1", "B", "C", "D=x=y"], {"B": "from-host"}) == {
        "A": "1", "B": "from-host", "D": "x=y"}
    assert da.parse_env({"N": 3}) == {"N": "3"}
    with pytest.raises(InvalidSpec, match="'=v'"):
        da.parse_env(["=v"])


def test_labels_without_value_are_empty() -> None:
    assert da.parse_labels(["a=1", "b"]) == {"a": "1", "b": ""}


def test_volumes_binds_and_named(tmp_path: Path) -> None:
    assert da.parse_volume("/h:/c:ro", tmp_path) == MountSpec("bind", "/c", "/h", True)
    assert da.parse_volume("./d:/c", tmp_path) == MountSpec("bind", "/c", str(tmp_path / "d"))
    assert da.parse_volume("data:/c:rw", tmp_path) == MountSpec("volume", "/c", "data")
    assert da.parse_volume("tmpfs:/t", tmp_path, tmpfs_source=True) == MountSpec("tmpfs", "/t")
    assert da.parse_volume("tmpfs:/t", tmp_path).type == "volume"  # as Docker reads it
    for bad in ("/only", "/h:c", "/h:/c:bogus", ":/c"):
        with pytest.raises(InvalidSpec, match="invalid volume"):
            da.parse_volume(bad, tmp_path)


def test_tmpfs_and_mount_fields(tmp_path: Path) -> None:
    assert da.parse_tmpfs("/run:size=1m,ro") == MountSpec("tmpfs", "/run", "", True, 1 << 20)
    assert da.parse_mount("type=bind,src=x,dst=/c,readonly", tmp_path) == MountSpec(
        "bind", "/c", str(tmp_path / "x"), True)
    assert da.parse_mount({"type": "tmpfs", "target": "/t", "size": "2k"}, tmp_path) == \
        MountSpec("tmpfs", "/t", "", False, 2048)
    with pytest.raises(InvalidSpec, match="unknown field 'colour'"):
        da.parse_mount("type=volume,target=/v,colour=red", tmp_path)
    with pytest.raises(InvalidSpec, match="needs type"):
        da.parse_mount({"type": "nfs", "target": "/v"}, tmp_path)


def test_ports_sizes_ulimits() -> None:
    assert da.parse_port("[::1]:0:80/udp") == PortSpec(80, "udp", "::1", 0)
    assert PortSpec.parse("9000:80") == da.parse_port("9000:80")
    with pytest.raises(InvalidSpec, match="'x' is not a port number"):
        da.parse_port("x")
    assert da.parse_size("1.5k") == 1536
    assert da.parse_ulimit("nofile=10:20") == ("nofile", (10, 20))


def test_network_choice() -> None:
    assert da.network_choice({}) == ("bridge", [])
    assert da.network_choice({"host": ()}) == ("host", [])
    assert da.network_choice({"a": ["x", "x"], "b": ()}) == (
        "a", [NetworkAttachment("a", ("x",)), NetworkAttachment("b", ())])
    with pytest.raises(InvalidSpec, match="cannot be combined"):
        da.network_choice({"a": (), "none": ()})


def test_run_option_syntax_of_issue_15(tmp_path) -> None:
    from pytest_isobox import dockerargs as d
    from pytest_isobox.engine import DeviceSpec, RestartPolicy

    assert d.parse_capabilities(["net_admin", "CAP_KILL", "all"]) == \
        ["CAP_NET_ADMIN", "CAP_KILL", "ALL"]
    assert d.effective_capabilities(["KILL"], ["ALL"]) == ["KILL"]
    assert "SYS_ADMIN" in d.effective_capabilities([], [], privileged=True)
    assert d.parse_device("/dev/fuse") == DeviceSpec("/dev/fuse", "/dev/fuse", "rwm")
    assert d.parse_device("/dev/a:/dev/b:r") == DeviceSpec("/dev/a", "/dev/b", "r")
    assert d.parse_sysctl("net.core.somaxconn=1024") == ("net.core.somaxconn", "1024")
    assert d.parse_sysctl("fs.mqueue.msg_max=20") == ("fs.mqueue.msg_max", "20")
    assert d.parse_extra_host("v6:::1") == "v6:::1"
    assert d.parse_expose("53/udp") == ["53/udp"]
    assert d.parse_restart("unless-stopped") == RestartPolicy("unless-stopped", 0)
    assert d.parse_duration("1h2m3.5s", "x") == 3723.5
    assert d.healthcheck(["curl", "-f", "x"]).test == ("CMD", "curl", "-f", "x")
    assert d.healthcheck(interval="5s").test == ()  # the image's command, other times
    assert d.healthcheck(disabled=True).test == ("NONE",)
    env = tmp_path / "e.env"
    env.write_bytes(b"A=1\r\n#c\n  B = x\nHOME\n")
    with pytest.raises(InvalidSpec, match=r"e.env:3: variable 'B ' contains whitespaces"):
        d.parse_key_value_file(env, from_environment=True)
    env.write_bytes(b"A=1\r\nK\n\xff=1\n")
    with pytest.raises(InvalidSpec, match=r"e.env:3: invalid utf8 bytes"):
        d.parse_key_value_file(env, from_environment=True)
    env.write_bytes(b"A=a=b\nK\nMISSING\n")
    assert d.parse_key_value_file(env, from_environment=True, environ={"K": "k"}) == \
        ["A=a=b", "K=k"]
    assert d.parse_key_value_file(env, from_environment=False) == ["A=a=b", "K", "MISSING"]
    for bad, call in (("vm.overcommit_memory=1", d.parse_sysctl),
                      ("on-failure:x", d.parse_restart), ("1-0", d.parse_expose),
                      ("linux/arm/v7" if d.host_platform() != "linux/arm" else "windows/amd64",
                       d.check_platform)):
        with pytest.raises(InvalidSpec):
            call(bad)
