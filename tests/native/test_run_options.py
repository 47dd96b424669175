"""Docker's run options on the native engine, seen from inside real containers, under both
executors of the start plan (the C shim and the Python runner)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec, DeviceSpec, InvalidSpec
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
