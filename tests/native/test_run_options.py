"""Docker's run options on the native engine, seen from inside real containers, under both
executors of the start plan (the C shim and the Python runner)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec, DeviceSpec, InvalidSpec, MountSpec
from tests.conftest import needs_root

pytestmark = needs_root


@pytest.fixture(params=["shim", "python"])
def native(request: pytest.FixtureRequest, isobox_home: Path, monkeypatch: pytest.MonkeyPatch):
    from pytest_isobox.native.engine import NativeEngine

    if request.param == "python":
        monkeypatch.setenv("ISOBOX_SHIM", "0")
    engine = NativeEngine(home=isobox_home)
    yield engine
    engine.close()


def run(engine, rootfs: Path, script: str, **options) -> tuple[int, str]:
    """Exit code and output of `sh -c script` in a fresh container, removed after."""
    options.setdefault("network_mode", "none")
    state = engine.run(ContainerSpec(image=str(rootfs), command=["sh", "-c", script], **options))
    try:
        code = engine.wait(state.id, timeout=60)
        return code, b"".join(chunk for _, chunk in engine.logs(state.id)).decode()
    finally:
        engine.remove(state.id, force=True)


def cap_eff(output: str) -> int:
    return int(re.search(r"CapEff:\s*([0-9a-f]+)", output)[1], 16)


def test_cap_add_and_drop_change_the_root_process_capabilities(native, busybox_rootfs) -> None:
    from pytest_isobox.native import capabilities
    from pytest_isobox.native.privileges import grantable_mask

    status = "grep -E 'Cap(Eff|Bnd)' /proc/self/status"
    _, default = run(native, busybox_rootfs, status)
    assert cap_eff(default) == capabilities.DOCKER_DEFAULT_MASK
    _, changed = run(native, busybox_rootfs, status, cap_add=["net_admin"],
                     cap_drop=["CAP_CHOWN"])
    mask = cap_eff(changed)
    assert mask & (1 << 12) and not mask & 1  # NET_ADMIN in, CHOWN out
    assert mask == (capabilities.DOCKER_DEFAULT_MASK | 1 << 12) & ~1
    assert int(re.search(r"CapBnd:\s*([0-9a-f]+)", changed)[1], 16) == mask
    _, none = run(native, busybox_rootfs, status, cap_drop=["ALL"], cap_add=["KILL"])
    assert cap_eff(none) == 1 << 5
    _, every = run(native, busybox_rootfs, status, cap_add=["ALL"], cap_drop=["SYS_ADMIN"])
    assert cap_eff(every) == grantable_mask() & ~(1 << 21)
    # what NET_ADMIN allows, seen working: an address on lo
    code, out = run(native, busybox_rootfs, "ip addr add 10.9.9.9/32 dev lo && echo added",
                    cap_add=["NET_ADMIN"])
    assert (code, out.strip()) == (0, "added")
    code, _ = run(native, busybox_rootfs, "ip addr add 10.9.9.9/32 dev lo")
    assert code != 0


def test_unknown_capability_is_refused_before_anything_is_made(native, busybox_rootfs) -> None:
    with pytest.raises(InvalidSpec, match="unknown capability: 'CAP_NOPE'"):
        native.create(ContainerSpec(image=str(busybox_rootfs), command=["true"],
                                    cap_add=["CAP_NOPE"]))
    assert native.containers(all=True) == []


def test_privileged_has_every_capability_no_seccomp_no_masks(native, busybox_rootfs) -> None:
    from pytest_isobox.native.privileges import grantable_mask

    script = ("grep -E 'CapEff|Seccomp:' /proc/self/status; grep -E ' /(sys|proc/sys) ' "
              "/proc/self/mountinfo; grep -c kcore /proc/self/mountinfo; ls /dev/loop-control")
    code, out = run(native, busybox_rootfs, script, privileged=True)
    assert code == 0, out
    assert cap_eff(out) == grantable_mask()
    assert re.search(r"Seccomp:\s*0", out)
    sys_line = next(ln for ln in out.splitlines() if " /sys " in ln)
    assert " rw," in sys_line
    assert " /proc/sys " not in out  # not bound read-only
    assert "\n0\n" in out  # /proc/kcore not masked
    assert "/dev/loop-control\n" in out  # a host device
    code, out = run(native, busybox_rootfs, script)
    assert re.search(r"Seccomp:\s*2", out) and " /proc/sys " in out
    assert "/dev/loop-control: No such file" in out


def test_privileged_may_open_host_devices(native, busybox_rootfs) -> None:
    code, out = run(native, busybox_rootfs, "head -c 0 < /dev/loop-control && echo opened",
                    privileged=True)
    assert (code, out.strip()) == (0, "opened")


def test_device_is_made_and_allowed_by_its_cgroup(native, busybox_rootfs, tmp_path) -> None:
    probe = "ls -l /dev/lc /dev/sub/lc; head -c 0 < /dev/lc && echo opened"
    code, out = run(native, busybox_rootfs, probe,
                    devices=[DeviceSpec("/dev/loop-control", "/dev/lc", "rwm"),
                             DeviceSpec("/dev/loop-control", "/dev/sub/lc", "rwm")])
    assert code == 0, out
    assert re.search(r"^c.*10,\s*237 .*/dev/lc$", out, re.MULTILINE)
    assert re.search(r"^c.*10,\s*237 .*/dev/sub/lc$", out, re.MULTILINE)
    assert "opened" in out
    # the same node made by the container itself (CAP_MKNOD) cannot be opened: the cgroup
    code, out = run(native, busybox_rootfs, "mknod /dev/lc c 10 237 && head -c 0 < /dev/lc")
    assert code != 0 and "not permitted" in out
    os.mknod(tmp_path / "notadevice", 0o600 | stat.S_IFREG)
    with pytest.raises(InvalidSpec, match="not a device node"):
        native.create(ContainerSpec(image=str(busybox_rootfs), command=["true"],
                                    devices=[DeviceSpec(str(tmp_path / "notadevice"), "/dev/x")]))


def test_shm_size_and_sysctls(native, busybox_rootfs) -> None:
    script = ("df -k /dev/shm | tail -1; cat /proc/sys/kernel/shmmax "
              "/proc/sys/net/ipv4/ip_unprivileged_port_start; "
              "grep ' /proc/sys ' /proc/self/mountinfo | grep -c ' ro,'")
    code, out = run(native, busybox_rootfs, script, shm_size=16 * 1024 * 1024,
                    sysctls={"kernel.shmmax": "123456789",
                             "net.ipv4.ip_unprivileged_port_start": "80"})
    assert code == 0, out
    lines = out.split("\n")
    assert lines[0].split()[1] == "16384"
    assert lines[1:4] == ["123456789", "80", "1"]  # set, and /proc/sys read-only after
    host = Path("/proc/sys/kernel/shmmax").read_text().strip()
    assert host != "123456789"  # the host's own is untouched


def test_add_host_and_dns_in_the_container_files(native, busybox_rootfs) -> None:
    code, out = run(native, busybox_rootfs, "cat /etc/hosts; echo ---; cat /etc/resolv.conf",
                    extra_hosts=["db.test:10.1.2.3", "gw.test:host-gateway"],
                    dns=["10.0.0.53"], dns_search=["corp.test"], dns_options=["ndots:2"])
    assert code == 0, out
    hosts, resolv = out.split("---\n")
    assert "10.1.2.3\tdb.test\n" in hosts and "127.0.0.1\tgw.test\n" in hosts
    assert [ln for ln in resolv.splitlines() if ln.startswith("nameserver")] == \
        ["nameserver 10.0.0.53"]
    assert "search corp.test\n" in resolv and "options ndots:2\n" in resolv


def test_add_host_gateway_and_ip_on_a_user_network(native, busybox_rootfs) -> None:
    from ipaddress import IPv4Network

    net = native.network_create("flagsnet")
    wanted = str(IPv4Network(net.subnet)[50])
    try:
        code, out = run(native, busybox_rootfs, "cat /etc/hosts; ip -4 addr show eth0",
                        network_mode="flagsnet", ip=wanted,
                        extra_hosts=["gw.test:host-gateway"])
        assert code == 0, out
        assert f"{net.gateway}\tgw.test\n" in out
        assert f"inet {wanted}/" in out
        with pytest.raises(InvalidSpec, match="user defined networks only"):
            native.create(ContainerSpec(image=str(busybox_rootfs), command=["true"],
                                        ip="172.17.0.99"))
    finally:
        native.network_remove("flagsnet")


def test_publish_all_publishes_the_image_exposed_ports_on_loopback(native, busybox_rootfs,
                                                                    tmp_path) -> None:
    import socket

    native.import_rootfs(busybox_rootfs, "busybox:flags")
    (tmp_path / "Dockerfile").write_text("FROM busybox:flags\nEXPOSE 8080 9000/udp\n")
    native.build(tmp_path, tag="exposing:flags")
    state = native.run(ContainerSpec(image="exposing:flags", publish_all=True,
                                     expose=["7000"],
                                     command=["sh", "-c", "echo hi | nc -l -p 8080"]))
    try:
        assert set(state.ports) == {"8080/tcp", "9000/udp", "7000/tcp"}
        ip, port = state.ports["8080/tcp"][0]
        assert ip == "127.0.0.1" and port > 0
        listening = ["sh", "-c", "cat /proc/net/tcp* | grep -qE ':1F90 [0-9A-F]+:0000 0A '"]
        while native.exec(state.id, listening).exit_code != 0:  # until nc listens on 8080
            assert native.state(state.id).running
        with socket.create_connection((ip, port), timeout=10) as conn:
            assert conn.recv(10) == b"hi\n"
    finally:
        native.remove(state.id, force=True)


def test_refused_options_name_the_value(native, busybox_rootfs) -> None:
    cases = [({"sysctls": {"kernel.hostname": "x"}}, "'kernel.hostname' is not allowed"),
             ({"sysctls": {"net.ipv4.ip_forward": "1"}, "network_mode": "host"},
              "host network namespace"),
             ({"platform": "linux/s390x"}, "'linux/s390x' is not this host's"),
             ({"working_dir": "rel/dir"}, "'rel/dir' is invalid"),
             ({"extra_hosts": ["nocolon"]}, "'nocolon' for --add-host")]
    for options, message in cases:
        options.setdefault("network_mode", "none")
        with pytest.raises(InvalidSpec, match=re.escape(message)):
            native.create(ContainerSpec(image=str(busybox_rootfs), command=["true"],
                                        **options))
    assert native.containers(all=True) == []


def test_image_volumes_become_anonymous_volumes_removed_with_the_container(
        native, busybox_rootfs, tmp_path) -> None:
    native.import_rootfs(busybox_rootfs, "busybox:flags")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox:flags\nRUN mkdir -p /data/sub && echo seed > /data/sub/f && "
        "echo gone > /data/old\nRUN rm /data/old\nVOLUME /data /cache\n")
    native.build(tmp_path, tag="volumes:flags")
    before = set(native.volumes())
    state = native.create(ContainerSpec(
        image="volumes:flags", network_mode="none",
        command=["sh", "-c", ("cat /data/sub/f; ls /data; "
                              "grep -c ' /data ' /proc/self/mountinfo; echo new > /data/written")]))
    made = set(native.volumes()) - before
    assert len(made) == 2  # /data and /cache
    native.start(state.id)
    assert native.wait(state.id, timeout=60) == 0
    out = b"".join(chunk for _, chunk in native.logs(state.id)).decode()
    assert out == "seed\nsub\n1\n"  # the image's content, its deleted file not
    written = [v for v in made if (native.volume_store.path(v) / "written").exists()]
    assert len(written) == 1
    native.remove(state.id)
    assert set(native.volumes()) == before
    # a mount at the path takes the volume's place: no anonymous one
    native.volume_create("mine")
    state = native.create(ContainerSpec(image="volumes:flags", network_mode="none",
                                        command=["true"],
                                        mounts=[MountSpec("volume", "/data", "mine")]))
    assert len(set(native.volumes()) - before - {"mine"}) == 1  # /cache only
    native.remove(state.id)
    assert set(native.volumes()) == before | {"mine"}
    native.volume_remove("mine")


def _inspect_until(engine, cid: str, done, what: str) -> dict:
    """The inspect document once `done(doc)` holds (the keeper works in its own process)."""
    import time

    deadline = time.monotonic() + 60
    while True:
        doc = engine.inspect(cid)
        if done(doc):
            return doc
        assert time.monotonic() < deadline, f"waited for {what}: {doc['State']}"


def _keeper_ended(doc: dict) -> None:
    """Wait for the keeper process recorded in keeper.json to end (nothing is left)."""
    import select

    pid = doc.get("keeper_pid")
    if not pid:
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], 60)[0], "the keeper did not end"
    finally:
        os.close(fd)


def test_restart_on_failure_counts_and_stops_at_its_limit(native, busybox_rootfs) -> None:
    from pytest_isobox.engine import RestartPolicy
    from pytest_isobox.native import keeper

    state = native.run(ContainerSpec(image=str(busybox_rootfs), network_mode="none",
                                     command=["sh", "-c", "echo run; exit 3"],
                                     restart=RestartPolicy("on-failure", 2)))
    try:
        doc = _inspect_until(native, state.id, lambda d: d["RestartCount"] == 2
                             and d["State"]["Status"] == "exited", "two restarts")
        assert doc["HostConfig"]["RestartPolicy"] == {"Name": "on-failure",
                                                      "MaximumRetryCount": 2}
        _keeper_ended(keeper.read(native._find(state.id).path))
        assert native.inspect(state.id)["RestartCount"] == 2  # and no third
        assert native.inspect(state.id)["State"]["ExitCode"] == 3
    finally:
        native.remove(state.id, force=True)


def test_restart_always_until_stopped(native, busybox_rootfs) -> None:
    from pytest_isobox.engine import RestartPolicy
    from pytest_isobox.native import keeper

    state = native.run(ContainerSpec(image=str(busybox_rootfs), network_mode="none",
                                     command=["sh", "-c", "exit 0"],
                                     restart=RestartPolicy("always")))
    try:
        _inspect_until(native, state.id, lambda d: d["RestartCount"] >= 2, "restarts")
        native.stop(state.id, timeout=1)
        record = keeper.read(native._find(state.id).path)
        _keeper_ended(record)
        count = native.inspect(state.id)["RestartCount"]
        assert native.inspect(state.id)["State"]["Running"] is False
        assert keeper.read(native._find(state.id).path)["restart_count"] == count
    finally:
        native.remove(state.id, force=True)


def test_healthcheck_healthy_then_unhealthy(native, busybox_rootfs) -> None:
    from pytest_isobox.engine import HealthcheckSpec
    from pytest_isobox.native import keeper

    state = native.run(ContainerSpec(
        image=str(busybox_rootfs), network_mode="none", command=["sleep", "600"],
        healthcheck=HealthcheckSpec(("CMD-SHELL", "test ! -e /tmp/sick && echo fine"),
                                    interval=0.2, retries=2)))
    try:
        doc = _inspect_until(native, state.id, lambda d: d["State"].get("Health", {})
                             .get("Status") == "healthy", "healthy")
        assert doc["State"]["Health"]["Log"][-1]["Output"] == "fine\n"
        assert doc["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL",
                                                        "test ! -e /tmp/sick && echo fine"]
        native.exec(state.id, ["touch", "/tmp/sick"])
        doc = _inspect_until(native, state.id, lambda d: d["State"]["Health"]["Status"]
                             == "unhealthy", "unhealthy")
        assert doc["State"]["Health"]["FailingStreak"] >= 2
        assert doc["State"]["Health"]["Log"][-1]["ExitCode"] == 1
        record = keeper.read(native._find(state.id).path)
    finally:
        native.remove(state.id, force=True)
    _keeper_ended(record)
