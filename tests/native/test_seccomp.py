"""Docker's default seccomp profile in real native containers, and the same probes under a real
Docker when one answers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.engine import ContainerSpec, InvalidSpec
from pytest_isobox.native import seccomp
from pytest_isobox.native.runtime import ProcessPlan, exec_init, exit_code_of
from tests.conftest import docker_available, needs_root

pytestmark = needs_root

# unshare(CLONE_NEWUSER) needs no capability, so only seccomp can refuse it
USERNS_PROBE = "unshare -U true; echo unshare=$?"
USERNS_ALLOWED = Path("/proc/sys/user/max_user_namespaces").exists() and int(
    Path("/proc/sys/user/max_user_namespaces").read_text()) > 0


def run_sh(engine, image: str, script: str, **spec) -> tuple[int, str, str]:
    """Run `sh -c script` to its end; (exit code, stdout, stderr)."""
    spec.setdefault("network_mode", "none")
    state = engine.run(ContainerSpec(image=image, command=["sh", "-c", script], **spec))
    try:
        code = engine.wait(state.id)
        out = b"".join(d for _, d in engine.logs(state.id, stderr=False)).decode()
        err = b"".join(d for _, d in engine.logs(state.id, stdout=False)).decode()
    finally:
        engine.remove(state.id, force=True)
    return code, out, err


def status_fields(text: str, *names: str) -> dict[str, str]:
    fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
    return {name: fields.get(name, "").strip() for name in names}


def test_the_container_runs_under_the_default_filter(engine, rootfs):
    code, out, _ = run_sh(engine, rootfs, "cat /proc/1/status")
    assert code == 0
    assert status_fields(out, "Seccomp", "Seccomp_filters") == {
        "Seccomp": "2", "Seccomp_filters": "1"}


def test_unconfined_has_no_filter(engine, rootfs):
    code, out, _ = run_sh(engine, rootfs, "cat /proc/1/status",
                          security_opt=["seccomp=unconfined"])
    assert code == 0
    assert status_fields(out, "Seccomp")["Seccomp"] == "0"


@pytest.mark.skipif(not USERNS_ALLOWED, reason="user namespaces are off on this host")
def test_a_call_the_profile_denies_fails_with_eperm(engine, rootfs):
    code, out, err = run_sh(engine, rootfs, USERNS_PROBE)
    assert code == 0
    assert "unshare=1" in out
    assert "Operation not permitted" in err
    code, out, err = run_sh(engine, rootfs, USERNS_PROBE, security_opt=["seccomp=unconfined"])
    assert (code, out.strip(), err) == (0, "unshare=0", "")


def test_ordinary_work_goes_on(engine, rootfs):
    """Pipes, subshells, background jobs, files, chroot (CAP_SYS_CHROOT is a default),
    personality(PER_LINUX32) through linux32, signals: all allowed."""
    script = ("echo hello | tr a-z A-Z > /tmp/f && cat /tmp/f && (echo sub) && "
              "(sleep 10 & kill $! ; wait $!; echo killed=$?) 2>/dev/null && chroot / true && "
              "linux32 uname -m && mkdir -p /tmp/d && ln -s /tmp/f /tmp/d/l && cat /tmp/d/l")
    code, out, err = run_sh(engine, rootfs, script)
    assert (code, err) == (0, "")
    assert out.split() == ["HELLO", "sub", "killed=143", "i686", "HELLO"]


def test_a_non_root_user_is_filtered_too(engine, rootfs):
    """The filter goes in before the uid change, and what follows it is allowed."""
    code, out, _ = run_sh(engine, rootfs, "id -u; cat /proc/self/status", user="nobody")
    assert code == 0
    assert out.splitlines()[0] == "65534"
    assert status_fields(out, "Seccomp")["Seccomp"] == "2"


def test_a_bad_option_is_refused_before_anything_runs(engine, rootfs):
    with pytest.raises(InvalidSpec, match="invalid --security-opt 2: .bogus=1."):
        engine.run(ContainerSpec(image=rootfs, command=["true"], network_mode="none",
                                 security_opt=["bogus=1"]))
    assert engine.containers(all=True) == []


def test_apparmor_and_label_options_are_accepted(engine, rootfs):
    code, out, _ = run_sh(engine, rootfs, "cat /proc/1/status",
                          security_opt=["apparmor=unconfined", "label=disable"])
    assert code == 0
    assert status_fields(out, "Seccomp")["Seccomp"] == "2"


def test_a_profile_of_ones_own(engine, rootfs, tmp_path):
    profile = tmp_path / "no-mkdir.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": '
                       '["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}')
    code, out, err = run_sh(engine, rootfs, "mkdir /tmp/x; echo mkdir=$?; touch /tmp/y && "
                            "echo touched", security_opt=[f"seccomp={profile}"])
    assert code == 0
    assert out.split() == ["mkdir=1", "touched"]
    assert "Permission denied" in err


def exec_in(engine, cid: str, argv: list[str], security_opt: list[str]) -> tuple[int, str]:
    """runtime.exec_init into a running container, given the container's seccomp options
    as the engine hands them over; (exit code, stdout)."""
    pid = engine.inspect(cid)["State"]["Pid"]
    out_r, out_w = os.pipe()
    error_r, error_w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    child = os.fork()
    if child == 0:
        try:
            exec_init(pid, ProcessPlan(argv=argv, env={}, create_workdir=False),
                      (null, out_w, out_w), error_w, lambda _pid: None, None,
                      seccomp_filter=seccomp.filter_for(security_opt),
                      no_new_privs=seccomp.no_new_privs(security_opt))
        finally:
            os._exit(127)
    for fd in (out_w, error_w, null):
        os.close(fd)
    with os.fdopen(out_r, "rb") as out, os.fdopen(error_r, "rb") as errors:
        output = out.read().decode()
        failure = errors.read().decode()
    _, status = os.waitpid(child, 0)
    assert failure == ""
    return exit_code_of(status), output


@pytest.mark.parametrize(("security_opt", "expected"), [
    ([], {"Seccomp": "2", "NoNewPrivs": "0"}),
    (["no-new-privileges"], {"Seccomp": "2", "NoNewPrivs": "1"}),
    (["seccomp=unconfined"], {"Seccomp": "0", "NoNewPrivs": "0"}),
])
def test_exec_init_applies_the_filter(engine, rootfs, security_opt, expected):
    cid = engine.run(ContainerSpec(image=rootfs, command=["sleep", "600"],
                                   network_mode="none")).id
    try:
        code, out = exec_in(engine, cid, ["cat", "/proc/self/status"], security_opt)
    finally:
        engine.remove(cid, force=True)
    assert code == 0
    assert status_fields(out, "Seccomp", "NoNewPrivs") == expected


@pytest.mark.parametrize(("security_opt", "expected"), [
    ([], {"Seccomp": "2", "NoNewPrivs": "0"}),
    (["no-new-privileges:true"], {"Seccomp": "2", "NoNewPrivs": "1"}),
    (["seccomp=unconfined"], {"Seccomp": "0", "NoNewPrivs": "0"}),
])
def test_the_engine_execs_under_the_containers_options(engine, rootfs, security_opt, expected):
    cid = engine.run(ContainerSpec(image=rootfs, command=["sleep", "600"], network_mode="none",
                                   security_opt=security_opt)).id
    try:
        first = engine.exec(cid, ["cat", "/proc/1/status"])
        execd = engine.exec(cid, ["cat", "/proc/self/status"])
    finally:
        engine.remove(cid, force=True)
    for result in (first, execd):
        assert result.exit_code == 0
        assert status_fields(result.stdout.decode(), "Seccomp", "NoNewPrivs") == expected


# --------------------------------------------------------------------------- against Docker

@pytest.fixture(scope="module")
def docker_image(busybox_rootfs: Path) -> Iterator[tuple[object, str]]:
    if not docker_available():
        pytest.skip("no Docker daemon answers")
    from pytest_isobox.docker.engine import DockerEngine

    docker = DockerEngine()
    ref = f"isobox-test/busybox:{uuid.uuid4().hex[:10]}"
    docker.import_rootfs(busybox_rootfs, ref)
    try:
        yield docker, ref
    finally:
        docker.remove_image(ref, force=True)
        docker.close()


PROBES = [
    "grep -E '^Seccomp:' /proc/1/status",
    USERNS_PROBE,
    "chroot / true; echo chroot=$?",
    "linux32 uname -m",
]


@pytest.mark.skipif(not USERNS_ALLOWED, reason="user namespaces are off on this host")
@pytest.mark.parametrize("security_opt", [[], ["seccomp=unconfined"]])
def test_same_outcomes_as_docker(engine, rootfs, docker_image, security_opt):
    docker, ref = docker_image
    script = "; ".join(PROBES)
    ours = run_sh(engine, rootfs, script, security_opt=security_opt)
    theirs = run_sh(docker, ref, script, security_opt=security_opt)
    assert ours == theirs
