"""The native runtime on the real kernel: isolation, process set-up, limits, exec, copy, logs."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from pytest_isobox.engine import (
    ConflictError,
    ContainerError,
    ContainerSpec,
    InvalidSpec,
    MountSpec,
)
from pytest_isobox.native.capabilities import DOCKER_DEFAULT_MASK
from tests.conftest import needs_root

pytestmark = needs_root


def run_output(engine, rootfs: str, *cmd: str, **spec) -> tuple[int, str, str]:
    """Run a container to its end; (exit code, stdout, stderr)."""
    spec.setdefault("network_mode", "none")
    state = engine.run(ContainerSpec(image=rootfs, command=list(cmd), **spec))
    code = engine.wait(state.id)
    out = b"".join(d for s, d in engine.logs(state.id, stderr=False)).decode()
    err = b"".join(d for s, d in engine.logs(state.id, stdout=False)).decode()
    engine.remove(state.id)
    return code, out, err


def sleeper(engine, rootfs: str, **spec) -> str:
    spec.setdefault("network_mode", "none")
    return engine.run(ContainerSpec(image=rootfs, command=["sleep", "600"], **spec)).id


def tar_of(files: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            if isinstance(content, str):  # a symlink
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def files_of(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


# --------------------------------------------------------------------------- isolation

def test_pid_1_hostname_and_no_host_processes(engine, rootfs):
    code, out, _ = run_output(engine, rootfs, "sh", "-c", "echo $$; hostname; ps -o pid | wc -l",
                              hostname="box1")
    pid, hostname, lines = out.split()
    assert (code, pid, hostname) == (0, "1", "box1")
    assert int(lines) <= 4  # header, sh, ps, wc: none of the host's processes


def test_default_hostname_is_the_short_id(engine, rootfs):
    state = engine.run(ContainerSpec(image=rootfs, command=["hostname"], network_mode="none"))
    engine.wait(state.id)
    assert b"".join(d for _, d in engine.logs(state.id)).decode().strip() == state.id[:12]
    assert len(state.id) == 64 and int(state.id, 16) >= 0


def test_writes_never_change_the_layer(engine, rootfs):
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size)
              for p in Path(rootfs).rglob("*") if not p.is_symlink()}
    code, _, _ = run_output(engine, rootfs, "sh", "-c",
                            "echo x >> /etc/passwd && rm /bin/ls && mkdir /new && echo y > /new/f")
    assert code == 0
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size)
             for p in Path(rootfs).rglob("*") if not p.is_symlink()}
    assert after == before
    assert (Path(rootfs) / "bin" / "ls").is_symlink()
    code, out, _ = run_output(engine, rootfs, "sh", "-c", "ls /new 2>&1; tail -1 /etc/passwd")
    assert "nobody" in out and "No such file" in out  # a new container sees the layer only


def test_masked_and_read_only_paths(engine, rootfs):
    script = ("cat /proc/kcore | wc -c; cat /proc/keys | wc -c; ls /sys/firmware | wc -l; "
              "echo 1 > /proc/sys/kernel/hostname && echo writable; "
              "echo c > /proc/sysrq-trigger && echo writable; true")
    _, out, err = run_output(engine, rootfs, "sh", "-c", script)
    assert out.split() == ["0", "0", "0"]
    assert "Read-only file system" in err


def test_default_mounts_and_etc_files(engine, rootfs):
    script = ("ls /dev | sort | tr '\\n' ' '; echo; df -k /dev/shm | tail -1; "
              "readlink /dev/fd; readlink /dev/ptmx; cat /etc/hostname; grep -c localhost /etc/hosts; "
              "grep -c nameserver /etc/resolv.conf; mount | grep -c mqueue; "
              "touch /sys/x 2>&1 | grep -c Read-only")
    _, out, _ = run_output(engine, rootfs, "sh", "-c", script, hostname="etcbox")
    lines = out.splitlines()
    devices = set(lines[0].split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "fd",
            "stdin", "stdout", "stderr", "ptmx", "core"} <= devices
    assert lines[1].split()[1] == str(64 * 1024)
    assert lines[2:4] == ["/proc/self/fd", "pts/ptmx"]
    assert lines[4] == "etcbox"
    assert int(lines[5]) >= 1 and int(lines[6]) >= 1 and lines[7] == "1" and lines[8] == "1"


def test_capabilities_are_dockers_default_set(engine, rootfs):
    _, out, _ = run_output(engine, rootfs, "grep", "-E", "^(Cap|NoNewPrivs)", "/proc/self/status")
    caps = {line.split(":")[0]: int(line.split()[1], 16) for line in out.splitlines()}
    assert caps == {"CapInh": 0, "CapPrm": DOCKER_DEFAULT_MASK, "CapEff": DOCKER_DEFAULT_MASK,
                    "CapBnd": DOCKER_DEFAULT_MASK, "CapAmb": 0,
                    "NoNewPrivs": 0}  # Docker does not set no_new_privs by default
    _, out, _ = run_output(engine, rootfs, "grep", "^CapEff", "/proc/self/status", user="nobody")
    assert int(out.split()[1], 16) == 0


# --------------------------------------------------------------------------- process

def test_exit_codes(engine, rootfs):
    assert run_output(engine, rootfs, "sh", "-c", "exit 3")[0] == 3
    state = engine.run(ContainerSpec(image=rootfs, command=["sleep", "600"], network_mode="none"))
    engine.kill(state.id, "SIGKILL")
    assert engine.wait(state.id) == 137
    assert engine.state(state.id).status == "exited"


def test_command_not_found_fails_the_start(engine, rootfs):
    state = engine.create(ContainerSpec(image=rootfs, command=["nosuchcmd"], network_mode="none"))
    with pytest.raises(ContainerError, match="executable file not found"):
        engine.start(state.id)
    assert engine.state(state.id).exit_code == 127


def test_env_workdir_and_entrypoint(engine, rootfs):
    _, out, _ = run_output(
        engine, rootfs, "-c", 'echo "$PATH|$HOME|$FOO|$HOSTNAME"; pwd', entrypoint=["sh"],
        env={"FOO": "bar"}, working_dir="/srv/app", hostname="h1")
    assert out.splitlines() == [
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/root|bar|h1", "/srv/app"]


def test_user_resolution_through_the_containers_files(engine, rootfs):
    passwd = (b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
              b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    group = b"root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n"

    def ids(user: str) -> str:
        state = engine.create(ContainerSpec(image=rootfs, command=["sh", "-c", "id; echo $HOME"],
                                            user=user, network_mode="none"))
        engine.put_archive(state.id, "/etc", tar_of({"passwd": passwd, "group": group}))
        try:
            engine.start(state.id)
        except ContainerError as exc:
            engine.remove(state.id)
            return str(exc)
        engine.wait(state.id)
        out = b"".join(d for _, d in engine.logs(state.id)).decode()
        engine.remove(state.id)
        return out

    assert ids("app") == "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)\n/home/app\n"
    assert ids("app:extra").startswith("uid=1000(app) gid=2000(extra)")
    assert ids("1000:0").startswith("uid=1000(app) gid=0(root)")
    assert ids("4242").startswith("uid=4242 gid=0(root) groups=0(root)")
    assert "unable to find user ghost" in ids("ghost")


# --------------------------------------------------------------------------- stop, init

def test_stop_escalates_to_sigkill_when_pid_1_ignores_the_signal(engine, rootfs):
    cid = sleeper(engine, rootfs)  # sleep as PID 1 has no SIGTERM handler: the kernel drops it
    engine.stop(cid, timeout=0.2)
    assert engine.state(cid).exit_code == 137


def test_init_forwards_stop_signal_and_reaps_zombies(engine, rootfs):
    def zombies(cid: str) -> bool:
        return int(engine.exec(cid, ["sh", "-c", "ps -o stat | grep -c ^Z"]).stdout) > 0

    orphan = ["sh", "-c", 'sh -c "sleep 0.01 &"; exec sleep 600']  # an orphan for PID 1
    plain = engine.run(ContainerSpec(image=rootfs, command=orphan, network_mode="none"))
    with_init = engine.run(ContainerSpec(image=rootfs, command=orphan, network_mode="none",
                                         init=True))
    deadline = time.monotonic() + 10
    while not zombies(plain.id) and time.monotonic() < deadline:
        pass  # the orphan `true` has not exited yet
    assert zombies(plain.id)  # sleep as PID 1 never reaps
    deadline = time.monotonic() + 10
    while zombies(with_init.id) and time.monotonic() < deadline:
        pass  # tini reaps as soon as it gets SIGCHLD
    assert not zombies(with_init.id)
    engine.stop(with_init.id, timeout=10)  # tini forwards SIGTERM to sleep
    assert engine.state(with_init.id).exit_code == 143


# --------------------------------------------------------------------------- limits

@pytest.mark.slow
def test_memory_hog_is_oom_killed(engine, rootfs):
    state = engine.run(ContainerSpec(image=rootfs, command=["dd", "if=/dev/zero", "of=/dev/null",
                                                            "bs=256M", "count=1"],
                                     mem_limit=32 * 1024**2, network_mode="none"))
    assert engine.wait(state.id, timeout=60) == 137
    assert engine.state(state.id).oom_killed
    assert engine.inspect(state.id)["State"]["OOMKilled"] is True


def test_fork_bomb_stops_at_the_pids_limit(engine, rootfs):
    run_output(engine, rootfs, "true")  # the next start takes the spare monitor forked meanwhile
    script = "for i in $(seq 60); do sleep 600 & done; echo spawned; exec sleep 600"
    state = engine.run(ContainerSpec(image=rootfs, command=["sh", "-c", script], pids_limit=20,
                                     network_mode="none"))
    for stream, data in engine.logs(state.id, follow=True):
        if b"spawned" in data:
            break
    assert engine.stats(state.id).pids <= 20
    errors = b"".join(d for s, d in engine.logs(state.id, stdout=False))
    assert b"fork" in errors.lower()
    assert os.fork is not None  # the host still forks: this test process goes on
    engine.remove(state.id, force=True)


@pytest.mark.slow
def test_cpu_quota_holds_a_busy_loop_near_half_a_core(engine, rootfs):
    cid = engine.run(ContainerSpec(image=rootfs, command=["sh", "-c", "while :; do :; done"],
                                   cpus=0.5, network_mode="none")).id
    first, t0 = engine.stats(cid).cpu_time_ns, time.monotonic()
    time.sleep(1.5)  # the measurement window, not a wait for a condition
    used = (engine.stats(cid).cpu_time_ns - first) / 1e9 / (time.monotonic() - t0)
    engine.remove(cid, force=True)
    assert 0.3 < used < 0.6  # a quota of a tenth or of a whole core fails


# --------------------------------------------------------------------------- exec, copy, logs

def test_exec_joins_the_container(engine, rootfs):
    cid = sleeper(engine, rootfs, env={"A": "1"}, hostname="execbox")
    script = "hostname; echo $A$B; ps -o pid | wc -l; pwd; echo oops >&2; exit 4"
    result = engine.exec(cid, ["sh", "-c", script], env={"B": "2"}, workdir="/tmp")
    assert result.exit_code == 4
    assert result.stdout.decode().split() == ["execbox", "12", "5", "/tmp"]
    assert result.stderr == b"oops\n"
    assert engine.exec(cid, ["id", "-u"], user="nobody").stdout == b"65534\n"
    missing = engine.exec(cid, ["nosuchcmd"])
    assert missing.exit_code == 127 and b"not found" in missing.stderr
    engine.remove(cid, force=True)
    created = engine.create(ContainerSpec(image=rootfs, command=["true"], network_mode="none"))
    with pytest.raises(ContainerError, match="not running"):
        engine.exec(created.id, ["true"])


def test_copy_in_and_out_running_and_stopped(engine, rootfs, tmp_path):
    running = sleeper(engine, rootfs)
    stopped = engine.create(ContainerSpec(image=rootfs, command=["true"], network_mode="none")).id
    for cid in (running, stopped):
        engine.put_archive(cid, "/tmp", tar_of({"dir/hello.txt": b"hello"}))
        assert files_of(engine.get_archive(cid, "/tmp/dir")) == {"dir/hello.txt": b"hello"}
        with pytest.raises(ContainerError):
            engine.get_archive(cid, "/no/such/path")
    # a symlink to / inside the container still resolves inside the container's root
    engine.put_archive(running, "/", tar_of({"escape": "/"}))
    engine.put_archive(running, "/escape/tmp", tar_of({"inside.txt": b"x"}))
    assert engine.exec(running, ["cat", "/tmp/inside.txt"]).stdout == b"x"
    assert not Path("/tmp/inside.txt").exists()
    with pytest.raises((ContainerError, InvalidSpec)):
        engine.put_archive(running, "/tmp", tar_of({"../../../../tmp/isobox-evil": b"x"}))
    assert not Path("/tmp/isobox-evil").exists()
    engine.remove(running, force=True)


def test_logs_keep_streams_apart_in_order_and_follow(engine, rootfs):
    script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done; sleep 0.3; echo last"
    state = engine.run(ContainerSpec(image=rootfs, command=["sh", "-c", script],
                                     network_mode="none"))
    followed = list(engine.logs(state.id, follow=True))  # returns once the container ended
    out = b"".join(d for s, d in followed if s == "stdout")
    err = b"".join(d for s, d in followed if s == "stderr")
    assert (out, err) == (b"out1\nout2\nout3\nlast\n", b"err1\nerr2\nerr3\n")
    assert list(engine.logs(state.id, tail=1)) == [("stdout", b"last\n")]


# --------------------------------------------------------------------------- mounts, names

def test_bind_tmpfs_and_named_volume_mounts(engine, rootfs, tmp_path):
    (tmp_path / "in.txt").write_text("from host\n")
    mounts = [MountSpec("bind", "/data", str(tmp_path)),
              MountSpec("bind", "/ro", str(tmp_path), read_only=True),
              MountSpec("tmpfs", "/scratch", size=1024 * 1024),
              MountSpec("volume", "/vol", "cache")]
    _, out, err = run_output(
        engine, rootfs, "sh", "-c",
        "cat /data/in.txt; echo hi > /data/out.txt; touch /ro/x; "
        "df -k /scratch | tail -1; echo kept > /vol/v.txt", mounts=mounts)
    assert out.splitlines()[0] == "from host"
    assert out.splitlines()[1].split()[1] == "1024"
    assert "Read-only" in err
    assert (tmp_path / "out.txt").read_text() == "hi\n"
    assert run_output(engine, rootfs, "cat", "/vol/v.txt",
                      mounts=[MountSpec("volume", "/vol", "cache")])[1] == "kept\n"
    assert "cache" in engine.volumes()
    engine.volume_remove("cache")
    with pytest.raises(InvalidSpec, match="does not exist"):
        engine.create(ContainerSpec(image=rootfs, command=["true"], network_mode="none",
                                    mounts=[MountSpec("bind", "/x", "/no/such/dir")]))


def test_names_are_unique(engine, rootfs):
    engine.create(ContainerSpec(image=rootfs, command=["true"], name="web", network_mode="none"))
    with pytest.raises(ConflictError, match="already in use"):
        engine.create(ContainerSpec(image=rootfs, command=["true"], name="web",
                                    network_mode="none"))
    assert engine.state("web").name == "web"
    engine.remove("web")
    engine.create(ContainerSpec(image=rootfs, command=["true"], name="web", network_mode="none"))


def test_remove_running_needs_force(engine, rootfs, isobox_home):
    cid = sleeper(engine, rootfs)
    with pytest.raises(ConflictError):
        engine.remove(cid)
    engine.remove(cid, force=True)
    assert not (isobox_home / "containers" / cid).exists()
    assert not any(cid in line for line in Path("/proc/mounts").read_text().splitlines())


def test_image_from_the_store_and_commit(engine, rootfs):
    engine.import_rootfs(rootfs, "busybox:test")
    state = engine.run(ContainerSpec(image="busybox:test", network_mode="none",
                                     command=["sh", "-c", "echo made > /made.txt"]))
    assert engine.wait(state.id) == 0
    image_id = engine.commit(state.id, config={"Cmd": ["cat", "/made.txt"]})
    child = engine.run(ContainerSpec(image=image_id, network_mode="none"))
    assert engine.wait(child.id) == 0
    assert b"".join(d for _, d in engine.logs(child.id)) == b"made\n"


def test_stats_listing_and_inspect(engine, rootfs):
    running = sleeper(engine, rootfs, name="busy", labels={"team": "runtime"})
    done = engine.run(ContainerSpec(image=rootfs, command=["true"], network_mode="none")).id
    engine.wait(done)
    stats = engine.stats(running)
    assert stats.pids == 1 and stats.memory_current > 0 and stats.cpu_time_ns > 0
    assert [s.id for s in engine.containers()] == [running]
    assert {s.id for s in engine.containers(all=True)} == {running, done}
    doc = engine.inspect("busy")
    assert (doc["Name"], doc["State"]["Status"], doc["Config"]["Labels"]) == (
        "/busy", "running", {"team": "runtime"})
    assert engine.state(done).status == "exited" and engine.stats(done).pids == 0
    engine.remove("busy", force=True)


def test_copy_a_single_file_from_a_file_object(engine, rootfs):
    cid = engine.create(ContainerSpec(image=rootfs, command=["true"], network_mode="none")).id
    engine.put_archive(cid, "/etc", io.BytesIO(tar_of({"motd": b"welcome\n"})))
    assert files_of(engine.get_archive(cid, "/etc/motd")) == {"motd": b"welcome\n"}
    engine.start(cid)
    assert engine.wait(cid) == 0
    assert files_of(engine.get_archive(cid, "/etc/motd")) == {"motd": b"welcome\n"}
