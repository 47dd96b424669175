"""DockerEngine containers against the real daemon: logs, exit codes, exec, copy, limits, ports."""

from __future__ import annotations

import io
import socket
import tarfile
import time

import pytest

from pytest_isobox.docker.engine import DockerEngine
from pytest_isobox.engine import (
    ConflictError,
    ContainerError,
    ContainerNotFound,
    ContainerSpec,
    Engine,
    ImageNotFound,
    MountSpec,
    NetworkAttachment,
    NetworkNotFound,
    PortSpec,
    VolumeNotFound,
    parse_size,
)
from tests.conftest import needs_docker
from tests.docker.conftest import TARGET, Made, podman_differs

pytestmark = needs_docker


def test_engine_implements_the_protocol(docker_engine: DockerEngine) -> None:
    assert isinstance(docker_engine, Engine)
    assert docker_engine.name == "docker"
    assert docker_engine.client.api_version == "1.41"  # dockerd 20.10 here


def test_echo_keeps_stdout_and_stderr_apart(made: Made) -> None:
    state = made.run(["sh", "-c", "echo one; echo two >&2; echo three"])
    assert made.engine.wait(state.id, timeout=30) == 0
    pieces = list(made.engine.logs(state.id))
    # Docker copies the two pipes separately: order holds within a stream, not across them
    assert [d for s, d in pieces if s == "stdout"] == [b"one\n", b"three\n"]
    assert [d for s, d in pieces if s == "stderr"] == [b"two\n"]
    assert b"".join(d for s, d in made.engine.logs(state.id, stderr=False)) == b"one\nthree\n"


def test_tty_logs_are_one_raw_stream(made: Made) -> None:
    state = made.run(["sh", "-c", "echo out; echo err >&2"], tty=True)
    made.engine.wait(state.id, timeout=30)
    pieces = list(made.engine.logs(state.id))
    assert {s for s, _ in pieces} == {"stdout"}
    assert sorted(b"".join(d for _, d in pieces).split()) == [b"err", b"out"]


def test_udp_port_is_published_on_loopback(made: Made) -> None:
    state = made.run(["sleep", "60"], ports=[PortSpec.parse("5353/udp")])
    [(host, port)] = state.ports["5353/udp"]
    assert host == (made.engine.remote_host or "127.0.0.1") and port > 0


def test_logs_tail(made: Made) -> None:
    state = made.run(["sh", "-c", "echo a; echo b; echo c"])
    made.engine.wait(state.id, timeout=30)
    assert list(made.engine.logs(state.id, tail=2)) == [("stdout", b"b\n"), ("stdout", b"c\n")]


def test_follow_streams_until_exit(made: Made) -> None:
    state = made.run(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"])
    text = b"".join(d for _, d in made.engine.logs(state.id, follow=True))
    assert text == b"1\n2\n3\n"
    assert made.engine.state(state.id).status == "exited"


def test_exit_code_and_times_in_state(made: Made) -> None:
    state = made.run(["sh", "-c", "exit 7"])
    assert made.engine.wait(state.id, timeout=30) == 7
    done = made.engine.state(state.id)
    assert done.status == "exited" and done.exit_code == 7 and not done.running
    assert done.pid is None
    assert done.created_at and done.started_at and done.finished_at
    assert abs(done.created_at - time.time()) < 300
    assert done.labels["io.isobox.owner"] == made.engine.owner.label


def test_wait_timeout_names_the_container(made: Made) -> None:
    state = made.run(["sleep", "30"])
    with pytest.raises(TimeoutError, match=state.id):
        made.engine.wait(state.id, timeout=0.3)
    made.engine.kill(state.id)
    assert made.engine.wait(state.id, timeout=30) == 137


def test_stop_uses_signal_then_kill(made: Made) -> None:
    state = made.run(["sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.05; done"])
    made.engine.stop(state.id, timeout=10)
    assert made.engine.state(state.id).exit_code == 42
    stubborn = made.run(["sleep", "30"])  # pid 1 ignores TERM without a handler
    made.engine.stop(stubborn.id, timeout=0)
    assert made.engine.state(stubborn.id).exit_code == 137


def test_spec_fields_reach_the_process(made: Made) -> None:
    state = made.run(
        ["sh", "-c", 'echo "$FOO $(pwd) $(id -u) $(hostname)"'],
        env={"FOO": "bar"}, working_dir="/tmp", user="nobody", hostname="box",
        labels={"purpose": "test"},
    )
    made.engine.wait(state.id, timeout=30)
    assert b"".join(d for _, d in made.engine.logs(state.id)) == b"bar /tmp 65534 box\n"
    assert made.engine.state(state.id).labels["purpose"] == "test"


def test_entrypoint_and_init(made: Made) -> None:
    state = made.run(["hello"], entrypoint=["echo"], init=True)
    made.engine.wait(state.id, timeout=30)
    assert b"".join(d for _, d in made.engine.logs(state.id)) == b"hello\n"
    assert made.engine.inspect(state.id)["HostConfig"]["Init"] is True


def test_exec_returns_code_and_separate_output(made: Made) -> None:
    state = made.run(["sleep", "60"])
    result = made.engine.exec(state.id, ["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert (result.exit_code, result.stdout, result.stderr) == (5, b"out\n", b"err\n")
    env = made.engine.exec(state.id, ["sh", "-c", "echo $X $(pwd) $(id -u)"],
                           env={"X": "y"}, workdir="/tmp", user="nobody")
    assert env.stdout == b"y /tmp 65534\n"


def test_exec_into_stopped_container_is_a_container_error(made: Made) -> None:
    state = made.run(["true"])
    made.engine.wait(state.id, timeout=30)
    with pytest.raises(ContainerError, match="not running"):
        made.engine.exec(state.id, ["true"])


@podman_differs("put_archive into a missing directory creates it")
def test_put_and_get_archive(made: Made) -> None:
    state = made.run(["sleep", "60"])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"payload\n"
        info = tarfile.TarInfo("dir/file.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    made.engine.put_archive(state.id, "/tmp", buf.getvalue())
    assert made.engine.exec(state.id, ["cat", "/tmp/dir/file.txt"]).stdout == b"payload\n"
    with tarfile.open(fileobj=io.BytesIO(made.engine.get_archive(state.id, "/tmp/dir"))) as tar:
        member = tar.extractfile("dir/file.txt")
        assert member is not None and member.read() == b"payload\n"
    with pytest.raises(ContainerError, match="/nope"):
        made.engine.get_archive(state.id, "/nope")
    with pytest.raises(ContainerError, match="/nope"):
        made.engine.put_archive(state.id, "/nope", buf.getvalue())


def test_stats_report_memory_cpu_and_pids(made: Made) -> None:
    state = made.run(["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 60"])
    made.engine.exec(state.id, ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
    stats = made.engine.stats(state.id)
    assert stats.memory_current > 0 and stats.memory_peak >= stats.memory_current
    assert stats.cpu_time_ns > 0
    assert stats.pids >= 1


@podman_differs("an OOM kill is not reported as OOMKilled")
def test_memory_hog_is_oom_killed(made: Made) -> None:
    state = made.run(["sh", "-c", "head -c 200m /dev/zero | tail"], mem_limit=parse_size("32m"))
    assert made.engine.wait(state.id, timeout=60) == 137
    done = made.engine.state(state.id)
    assert done.oom_killed and done.exit_code == 137


def test_limits_reach_host_config(made: Made) -> None:
    state = made.run(["true"], mem_limit=64 * 1024**2, cpus=0.5, cpu_shares=512, pids_limit=32)
    host = made.engine.inspect(state.id)["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["CpuShares"], host["PidsLimit"]) == (
        64 * 1024**2, 500_000_000, 512, 32)


def test_published_port_on_loopback_is_reachable(made: Made) -> None:
    state = made.run(["nc", "-ll", "-p", "8080", "-e", "echo", "hi"],
                     ports=[PortSpec.parse("8080")])
    [(host, port)] = state.ports["8080/tcp"]
    assert host == (made.engine.remote_host or "127.0.0.1") and port > 0
    assert _read_when_listening(host, port) == b"hi\n"


def _read_when_listening(host: str, port: int, deadline: float = 20.0) -> bytes:
    """Connect until the service answers (docker-proxy accepts before the server listens)."""
    end = time.monotonic() + deadline
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as conn:
                data = conn.recv(100)
            if data:
                return data
        except OSError:
            pass
        if time.monotonic() > end:
            raise AssertionError(f"nothing answered on {host}:{port} within {deadline} s")
        time.sleep(0.02)


def test_named_network_resolves_names_and_aliases(made: Made) -> None:
    net = made.network()


    db = made.run(["sleep", "60"], networks=[NetworkAttachment(net, ("db-alias",))])
    client = made.run(["sleep", "60"], network_mode=net)
    db_ip = made.engine.state(db.id).ips[net]
    for name in ("db-alias", db.name):
        ping = made.engine.exec(client.id, ["ping", "-c", "1", "-W", "5", name])
        assert ping.exit_code == 0, ping.output
        assert f"({db_ip})".encode() in ping.stdout
    info = made.engine.network_inspect(net)
    assert info.containers[db.id] == db_ip and client.id in info.containers
    assert info.labels["io.isobox.session"] == made.engine.session


def test_second_network_is_connected_after_create(made: Made) -> None:


    first, second = made.network(), made.network()
    state = made.run(["sleep", "60"],
                     networks=[NetworkAttachment(first), NetworkAttachment(second, ("two",))])
    assert set(state.ips) == {first, second}
    peer = made.run(["sleep", "60"], network_mode=second)
    assert made.engine.exec(peer.id, ["ping", "-c", "1", "-W", "5", "two"]).exit_code == 0


def test_network_none_has_only_loopback(made: Made) -> None:
    state = made.run(["sleep", "60"], network_mode="none")
    links = made.engine.exec(state.id, ["ls", "/sys/class/net"]).stdout.split()
    assert links == [b"lo"]
    assert made.engine.state(state.id).ips == {}


def test_mounts_bind_tmpfs_and_volume(made: Made, tmp_path) -> None:
    (tmp_path / "host.txt").write_text("from host\n")
    volume = f"isobox-test-vol-{made.engine.session[:8]}"
    made.volumes.append(volume)
    made.engine.volume_create(volume)


    state = made.run(
        ["sh", "-c", ("cat /in/host.txt; echo v > /vol/f; grep -c ' /scratch tmpfs' /proc/mounts;"
                     " touch /in/x 2>/dev/null || echo ro")],
        mounts=[MountSpec("bind", "/in", str(tmp_path), read_only=True),
                MountSpec("tmpfs", "/scratch", size=1024 * 1024),
                MountSpec("volume", "/vol", volume)],
    )
    made.engine.wait(state.id, timeout=30)
    assert b"".join(d for _, d in made.engine.logs(state.id)) == b"from host\n1\nro\n"
    assert volume in made.engine.volumes()


def test_missing_things_raise_our_errors(made: Made) -> None:
    with pytest.raises(ContainerNotFound):
        made.engine.state("isobox-no-such-container")
    with pytest.raises(ImageNotFound):
        made.engine.create(ContainerSpec(image="isobox-test/no-such-image:0"))
    with pytest.raises(ImageNotFound):
        made.engine.image_inspect("isobox-test/no-such-image:0")


    with pytest.raises(NetworkNotFound):
        made.engine.network_inspect("isobox-no-such-network")
    with pytest.raises(VolumeNotFound):
        made.engine.volume_remove("isobox-no-such-volume")


def test_name_taken_or_in_use_is_a_conflict(made: Made) -> None:
    net = made.network()
    first = made.run(["sleep", "60"], network_mode=net)
    with pytest.raises(ConflictError, match=first.name):
        made.engine.create(ContainerSpec(image=made.image, command=["true"], name=first.name))
    with pytest.raises(ConflictError):
        made.engine.network_create(net)
    with pytest.raises(ConflictError):
        made.engine.network_remove(net)  # a container is attached
    with pytest.raises(ConflictError):
        made.engine.remove(first.id)  # running, and not forced


def test_start_failure_leaves_no_container(made: Made) -> None:
    name = "isobox-test-nostart-" + made.engine.session[:8]
    with pytest.raises(ContainerError):
        made.run(["/no/such/binary"], name=name)
    with pytest.raises(ContainerNotFound):
        made.engine.state(name)


def test_auto_remove_keeps_logs_until_waited_then_removes(made: Made) -> None:
    state = made.run(["sh", "-c", "echo bye; exit 5"], auto_remove=True)
    assert made.engine.inspect(state.id)["HostConfig"]["AutoRemove"] is False
    assert b"".join(d for _, d in made.engine.logs(state.id, follow=True)) == b"bye\n"
    assert made.engine.state(state.id).exit_code == 5  # exited, still there to be read
    assert made.engine.wait(state.id, timeout=30) == 5
    with pytest.raises(ContainerNotFound):
        made.engine.state(state.id)


@podman_differs("wait on an auto-removed container gives 0, not its exit code")
def test_persistent_auto_remove_is_dockers_and_wait_still_gives_the_code(made: Made) -> None:
    spec = ContainerSpec(image=made.image, command=["sh", "-c", "exit 9"], auto_remove=True,
                         persistent=True, name=f"isobox-test-rm-{made.engine.session[:8]}")
    made.containers.append(spec.name)  # type: ignore[arg-type]
    state = made.engine.create(spec)
    assert made.engine.inspect(state.id)["HostConfig"]["AutoRemove"] is True
    made.engine.start(state.id)
    assert made.engine.wait(spec.name, timeout=30) == 9  # type: ignore[arg-type]
    with pytest.raises(ContainerNotFound):
        made.engine.state(state.id)


def test_containers_lists_running_and_all(made: Made) -> None:
    running = made.run(["sleep", "60"])
    done = made.run(["true"])
    made.engine.wait(done.id, timeout=30)
    assert running.id in {c.id for c in made.engine.containers()}
    assert done.id not in {c.id for c in made.engine.containers()}
    assert done.id in {c.id for c in made.engine.containers(all=True)}


@podman_differs("commit loses a change made in a running container's filesystem")
def test_commit_keeps_changes_and_config(made: Made) -> None:
    state = made.run(["sh", "-c", "echo committed > /marker"])
    made.engine.wait(state.id, timeout=30)
    image_id = made.engine.commit(state.id, config={"Cmd": ["cat", "/marker"]},
                                  created_by="test")
    made.images.append(image_id)
    child = made.run(None, image=image_id)  # type: ignore[arg-type]
    made.engine.wait(child.id, timeout=30)
    assert b"".join(d for _, d in made.engine.logs(child.id)) == b"committed\n"


def test_remove_later_is_settled_before_its_network_goes_and_at_close(made: Made) -> None:
    """A test's teardown removes in the background; a network it was on can still go at
    once, and close() returns only when every such removal is done."""
    engine = DockerEngine()
    try:
        net = made.network()
        spec = ContainerSpec(image=made.image, command=["sleep", "60"], network_mode=net)
        first = engine.run(spec)
        engine.remove_later(first.id)
        engine.network_remove(net)  # waits for the removal: no "active endpoints"
        made.networks.remove(net)
        with pytest.raises(ContainerNotFound):
            engine.state(first.id)
        second = engine.run(ContainerSpec(image=made.image, command=["sleep", "60"]))
        engine.remove_later(second.id)
    finally:
        engine.close()
    with pytest.raises(ContainerNotFound):
        made.engine.state(second.id)


def test_run_options_of_issue_15_reach_the_container(made: Made) -> None:
    from pytest_isobox.engine import DeviceSpec

    script = ("grep CapEff /proc/self/status; grep db.test /etc/hosts; "
              "grep nameserver /etc/resolv.conf; df -k /dev/shm | tail -1 | awk '{print $2}'; "
              "cat /proc/sys/kernel/shmmax; head -c0 < /dev/lc && echo opened")
    state = made.run(["sh", "-c", script], cap_drop=["ALL"], cap_add=["CAP_KILL"],
                     extra_hosts=["db.test:10.1.2.3"], dns=["10.0.0.53"],
                     shm_size=16 * 1024 * 1024, sysctls={"kernel.shmmax": "123456789"},
                     devices=[DeviceSpec("/dev/loop-control", "/dev/lc", "rwm")])
    assert made.engine.wait(state.id, timeout=60) == 0
    out = b"".join(chunk for _, chunk in made.engine.logs(state.id)).decode().split("\n")
    assert out[:6] == ["CapEff:\t0000000000000020", "10.1.2.3\tdb.test",
                       "nameserver 10.0.0.53", "16384", "123456789", "opened"]
    host = made.engine.inspect(state.id)["HostConfig"]
    if TARGET == "podman":  # Podman's inspect lists what ALL dropped, and no Sysctls
        assert {"CHOWN", "SETUID"} <= set(host["CapDrop"])
    else:
        assert host["CapDrop"] == ["ALL"] and host["Sysctls"] == {"kernel.shmmax": "123456789"}


def test_publish_all_binds_exposed_ports_on_loopback_only(made: Made, tmp_path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {made.image}\nEXPOSE 8080\n")
    tag = f"{made.image}-exposing"
    made.images.append(tag)
    made.engine.build(tmp_path, tag=tag)
    state = made.run(["sleep", "60"], image=tag, publish_all=True, expose=["7000"])
    assert set(state.ports) == {"8080/tcp", "7000/tcp"}
    here = made.engine.client.address.remote_host or "127.0.0.1"  # a remote daemon: its address
    assert {ip for bindings in state.ports.values() for ip, _ in bindings} == {here}
    assert made.engine.inspect(state.id)["HostConfig"]["PublishAllPorts"] is False
