"""The start plan (startplan.py): its order, and the same container seen alike whichever
executor carries it out, isobox-shim.c or the Python runner (planrunner.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec, MountSpec
from pytest_isobox.native import linux, mounts, startplan
from pytest_isobox.native.runtime import ContainerPlan, ProcessPlan
from tests.conftest import needs_root


def _plan(**kw) -> ContainerPlan:
    process = ProcessPlan(argv=["sh"], env={"A": "1"}, tty=kw.pop("tty", False))
    kw.setdefault("lowerdirs", ["/l/a", "/l/b"])
    return ContainerPlan(id="c", rootfs="/r", upper="/u", work="/w", hostname="h",
                         process=process, **kw)


def _names(steps: list) -> list[str]:
    return [step[0] for step in steps]


def test_the_plan_reads_in_the_kernels_order() -> None:
    names = _names(startplan.container_steps(_plan(), wait_network=True, wait_cgroup=True))
    order = ["unshare", "ready", "lo", "private", "mount", "root", "pivot", "mask", "readonly",
             "hostname", "setsid", "go", "user", "workdir", "nofile", "bounding", "identity",
             "caps", "exec"]
    first = [names.index(n) for n in order]  # each is there, and in this order
    assert first == sorted(first)
    assert names[-1] == "exec" and names.count("go") == 1


def test_a_cgroup_namespace_waits_for_the_cgroup_first() -> None:
    names = _names(startplan.container_steps(_plan(cgroup_ns=True), wait_network=False,
                                             wait_cgroup=True))
    assert names[:3] == ["unshare", "go", "unshare"] and names.count("go") == 1
    # the shim joined the cgroup before the plan: no go at all without a network
    shim = _names(startplan.container_steps(_plan(cgroup_ns=True), wait_network=False,
                                            wait_cgroup=False))
    assert "go" not in shim and "ready" not in shim


def test_rootless_plans_bind_devices_and_use_userxattr() -> None:
    steps = startplan.rootfs_steps(_plan(rootless=True, lowerdirs=["/l/a"]))
    assert "mknodin" not in _names(steps)
    assert any(s[0] == "mount" and s[-1].endswith(",userxattr") for s in steps)
    binds = [s for s in steps if s[0] == "mountin" and s[1] == s[2] and s[1].startswith("/dev/")]
    assert sorted(s[1] for s in binds) == sorted(f"/dev/{d}" for d in mounts.DEVICES)


def test_environment_and_wire_form() -> None:
    plan = _plan(tty=True)
    exec_step = startplan.container_steps(plan, wait_network=False, wait_cgroup=True)[-1]
    assert exec_step == ("exec", ["sh"], [f"PATH={startplan.DEFAULT_PATH}", "HOSTNAME=h",
                                          "TERM=xterm", "A=1"])
    wire = startplan.encode([("seccomp", b"\x01\xff"), exec_step])
    assert wire[:2] == ["seccomp", "01ff"]
    assert wire[2:6] == ["exec", "1", "sh", "4"] and wire[-1] == "end"
    with pytest.raises(ValueError, match="NUL"):
        startplan.encode([("hostname", "a\0b")])


# ------------------------------------------------------------------ both executors, one view

PROBE = r"""
cat /proc/self/mountinfo | awk '{ s = $5 " " $6; for (i = 7; $i != "-"; i++) ; \
  s = s " " $(i+1) " " $(i+3); print s }'
echo ---
grep -E '^(Cap|NoNewPrivs|Seccomp|Uid|Gid|Groups)' /proc/self/status
echo ---
ulimit -a
echo ---
pwd
echo ---
env | sort
echo ---
hostname
"""


def _view(engine, image: str, data: Path) -> str:
    spec = ContainerSpec(image=image, network_mode="none", command=["sh", "-c", PROBE],
                         hostname="same", working_dir="/made/here", env={"X": "y"},
                         user="nobody",
                         ulimits={"nproc": (512, 1024)},
                         mounts=[MountSpec("bind", "/data", str(data), read_only=True),
                                 MountSpec("tmpfs", "/scratch", size=1 << 20)],
                         security_opt=["no-new-privileges"])
    state = engine.run(spec)
    try:
        assert engine.wait(state.id) == 0
        out = b"".join(chunk for _, chunk in engine.logs(state.id)).decode()
    finally:
        engine.remove(state.id, force=True)
    # per-container paths (overlay dirs) differ by id; the rest must be identical
    return re.sub(r"(lowerdir|upperdir|workdir)=[^,]*", r"\1=X", out)


@needs_root
def test_shim_and_python_runner_give_the_same_container(tmp_path: Path, busybox_rootfs: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_isobox.native.engine import NativeEngine

    data = tmp_path / "data"
    data.mkdir()
    views = {}
    for executor in ("shim", "python"):
        monkeypatch.setenv("ISOBOX_SHIM", "1" if executor == "shim" else "0")
        with NativeEngine(home=tmp_path / executor) as engine:
            if executor == "shim" and engine._shim_binary() is None:
                pytest.skip("no C compiler here: only the Python runner")
            views[executor] = _view(engine, str(busybox_rootfs), data)
    assert views["shim"] == views["python"]
    mountinfo, status, limits, cwd, env, hostname = views["shim"].split("---\n")
    assert "/data ro," in mountinfo and "/scratch rw," in mountinfo and " overlay " in mountinfo
    assert "NoNewPrivs:\t1" in status and "Seccomp:\t2" in status
    assert re.search(r"CapEff:\t0+\n", status)  # nobody holds no capability
    assert re.search(r"CapBnd:\t0+a80425fb\n", status)  # Docker's default bounding set
    assert re.search(r"process\D+512", limits)
    assert cwd == "/made/here\n" and "X=y\n" in env and hostname == "same\n"
    assert linux.last_cap() > 0


@needs_root
def test_read_only_root_keeps_its_mounts_writable(isobox_home: Path, busybox_rootfs: Path,
                                                 tmp_path: Path) -> None:
    from pytest_isobox.native.engine import NativeEngine

    probe = ("touch /x 2>/dev/null && echo root-rw || echo root-ro; "
             "touch /scratch/x && echo tmpfs-rw; echo > /dev/null && echo dev-rw")
    with NativeEngine(home=isobox_home) as engine:
        for read_only, first in ((True, "root-ro"), (False, "root-rw")):
            state = engine.run(ContainerSpec(
                image=str(busybox_rootfs), network_mode="none", read_only=read_only,
                command=["sh", "-c", probe], mounts=[MountSpec("tmpfs", "/scratch")]))
            assert engine.wait(state.id) == 0
            out = b"".join(chunk for _, chunk in engine.logs(state.id)).decode()
            engine.remove(state.id)
            assert out.split() == [first, "tmpfs-rw", "dev-rw"]
