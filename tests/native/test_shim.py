"""isobox-shim, the C monitor + container init: its plan encoding, its build, and containers
it starts on the real kernel (the rest of tests/native runs through it too, as the default)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerError, ContainerSpec
from pytest_isobox.native import shim
from pytest_isobox.native.runtime import ContainerPlan, ProcessPlan
from tests.conftest import REPO, needs_root


def _plan(**process) -> ContainerPlan:
    return ContainerPlan(id="c", rootfs="/r", lowerdirs=["/l/a", "/l/b"], upper="/u", work="/w",
                         hostname="h", process=ProcessPlan(argv=["sh", "-c", "true"],
                                                           env={"A": "1"}, **process))


def _fields(blob: bytes) -> list[str]:
    return blob.decode().split("\0")[:-1]


def test_plan_is_monitor_settings_then_steps_ending_in_exec():
    fields = _fields(shim.encode_plan(_plan(user="nobody"), log="/d/log", exit_file="/d/exit",
                                      persistent=True, network=True))
    split = fields.index("")
    assert fields[:split] == ["log", "/d/log", "exit", "/d/exit", "persistent", "1"]
    steps = fields[split + 1:]
    names = [f for f in steps if f in ("unshare", "ready", "pivot", "go", "user", "identity",
                                       "caps", "exec", "end")]
    assert names == ["unshare", "ready", "pivot", "go", "user", "identity", "caps", "exec",
                     "end"]
    exec_at = steps.index("exec")
    assert steps[exec_at + 1:exec_at + 5] == ["3", "sh", "-c", "true"]
    assert "A=1" in steps and "HOSTNAME=h" in steps
    assert steps[steps.index("user") + 1] == "nobody"
    # lowerdirs sharing a parent are given relative to it, so many fit the one-page mount data
    assert steps[steps.index("chdir") + 1] == "/l"
    assert any(f.startswith("lowerdir=a:b,") for f in steps)


def test_plan_without_network_has_no_handshake():
    steps = _fields(shim.encode_plan(_plan(), log="l", exit_file="e", persistent=False,
                                     network=False))
    assert "ready" not in steps and "go" not in steps


def test_every_plan_without_a_terminal_is_eligible_rootless_too():
    for rootless in (False, True):
        plan = _plan()
        plan.rootless = rootless
        assert shim.eligible(plan)
    assert not shim.eligible(_plan(tty=True))


def test_a_nul_byte_in_the_plan_is_refused():
    plan = _plan()
    plan.process.env["BAD"] = "a\0b"
    with pytest.raises(ValueError, match="NUL"):
        shim.encode_plan(plan, log="l", exit_file="e", persistent=False, network=False)


def test_binary_is_built_once_per_source_and_can_be_turned_off(tmp_path, monkeypatch):
    built = shim.binary(tmp_path)
    if built is None:
        pytest.skip("no C compiler here")
    assert os.access(built, os.X_OK) and Path(built).name.startswith("isobox-shim-")
    assert shim.binary(tmp_path) == built
    monkeypatch.setenv("ISOBOX_SHIM", "0")
    assert shim.binary(tmp_path) is None


@pytest.fixture
def engine(isobox_home: Path):
    from pytest_isobox.native.engine import NativeEngine

    eng = NativeEngine(home=isobox_home)
    if eng._shim_binary() is None:
        eng.close()
        pytest.skip("no C compiler here: the engine uses the Python monitor")
    yield eng
    eng.close()


def _monitor_exe(engine, cid: str) -> str:
    monitor = engine._find(cid).read_state()["monitor"]["pid"]
    return os.readlink(f"/proc/{monitor}/exe")


@needs_root
def test_the_shim_monitors_a_container_and_keeps_its_streams_apart(engine, busybox_rootfs):
    image = str(busybox_rootfs)
    state = engine.run(ContainerSpec(image=image, network_mode="none", command=["sleep", "600"]))
    assert "isobox-shim" in _monitor_exe(engine, state.id)
    assert engine.state(state.id).running
    engine.stop(state.id, timeout=0)
    assert engine.wait(state.id) == 137
    engine.remove(state.id)
    state = engine.run(ContainerSpec(image=image, network_mode="none", command=[
        "sh", "-c", "echo out; echo err >&2; echo out2; exit 3"]))
    assert engine.wait(state.id) == 3
    logs = list(engine.logs(state.id))
    assert b"".join(d for s, d in logs if s == "stdout") == b"out\nout2\n"
    assert b"".join(d for s, d in logs if s == "stderr") == b"err\n"
    engine.remove(state.id)


@needs_root
def test_start_failures_say_why_with_dockers_codes(engine, busybox_rootfs):
    image = str(busybox_rootfs)
    missing = engine.create(ContainerSpec(image=image, network_mode="none", command=["nosuch"]))
    with pytest.raises(ContainerError, match='"nosuch": executable file not found in'):
        engine.start(missing.id)
    assert (engine.state(missing.id).status, engine.state(missing.id).exit_code) == ("created",
                                                                                     127)
    denied = engine.create(ContainerSpec(image=image, network_mode="none",
                                         command=["/etc/passwd"]))
    with pytest.raises(ContainerError, match="exec /etc/passwd: Permission denied"):
        engine.start(denied.id)
    assert engine.state(denied.id).exit_code == 126


@needs_root
def test_python_monitor_when_turned_off(isobox_home, busybox_rootfs, monkeypatch):
    from pytest_isobox.native.engine import NativeEngine

    monkeypatch.setenv("ISOBOX_SHIM", "0")
    with NativeEngine(home=isobox_home) as eng:
        state = eng.run(ContainerSpec(image=str(busybox_rootfs), network_mode="none",
                                      command=["sleep", "600"]))
        assert "python" in _monitor_exe(eng, state.id)
        eng.remove(state.id, force=True)


@needs_root
def test_a_persistent_containers_exit_is_read_by_a_later_engine(isobox_home, busybox_rootfs):
    """The shim records the exit when no engine watches; the next one reads it and releases
    the cgroup and network on remove."""
    script = textwrap.dedent(f"""
        import sys
        from pytest_isobox.engine import ContainerSpec
        from pytest_isobox.native.engine import NativeEngine
        with NativeEngine(home={str(isobox_home)!r}) as eng:
            st = eng.run(ContainerSpec(image={str(busybox_rootfs)!r}, persistent=True,
                                       command=["sleep", "600"],
                                       network_mode="bridge"))
            print(st.id, st.pid)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.split()
    cid, pid = out[0], int(out[1])
    from pytest_isobox.native.engine import NativeEngine

    with NativeEngine(home=isobox_home) as eng:
        assert eng.state(cid).running
        os.kill(pid, 9)  # its PID 1 gets only SIGKILL from outside: the exit is 137
        fd = os.pidfd_open(eng._find(cid).read_state()["monitor"]["pid"])
        try:
            import select

            select.select([fd], [], [], 30)
        finally:
            os.close(fd)
        st = eng.state(cid)
        assert (st.status, st.exit_code) == ("exited", 137)
        assert eng.wait(cid) == 137
        assert eng.inspect(cid)["State"]["ExitCode"] == 137
        eng.remove(cid)


@needs_root
def test_host_network_joins_the_hosts_namespace_and_the_others_get_their_own(engine,
                                                                             busybox_rootfs):
    """A spare's container process makes its namespaces before its plan comes; a container
    on the host's network joins that one back."""
    image = str(busybox_rootfs)
    host_ns = os.readlink("/proc/self/ns/net")
    seen = {}
    for mode in ("host", "none", "host"):
        state = engine.run(ContainerSpec(image=image, network_mode=mode,
                                         command=["readlink", "/proc/self/ns/net"]))
        assert engine.wait(state.id) == 0
        seen.setdefault(mode, []).append(
            b"".join(d for _, d in engine.logs(state.id)).decode().strip())
        engine.remove(state.id)
    assert seen["host"] == [host_ns, host_ns]
    assert seen["none"][0].startswith("net:[") and seen["none"][0] != host_ns


@needs_root
def test_an_inheritable_fd_of_the_engine_process_never_reaches_the_container(engine,
                                                                            busybox_rootfs,
                                                                            tmp_path):
    """An open directory of the host in the container would be a way out of its root."""
    leaked = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(leaked, True)
    try:
        state = engine.run(ContainerSpec(image=str(busybox_rootfs), network_mode="none",
                                         command=["ls", "/proc/self/fd"]))
        assert engine.wait(state.id) == 0
        fds = b"".join(d for s, d in engine.logs(state.id) if s == "stdout").split()
        engine.remove(state.id)
    finally:
        os.close(leaked)
    assert sorted(int(f) for f in fds) == [0, 1, 2, 3]  # 3: ls's own listing of the dir
