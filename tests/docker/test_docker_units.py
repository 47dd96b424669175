"""Pure logic of the Docker engine: framing, spec mapping, times, owners, progress, errors."""

from __future__ import annotations

import inspect
import io
import os
import struct
from pathlib import Path

import pytest

from pytest_isobox.docker.build import BuildProgress, context_tar
from pytest_isobox.docker.client import (
    MAX_API_VERSION,
    DockerClient,
    iter_json_stream,
    negotiate_api_version,
)
from pytest_isobox.docker.containers import create_body, parse_time, state_from_inspect
from pytest_isobox.docker.engine import DockerEngine
from pytest_isobox.docker.errors import error_for
from pytest_isobox.docker.images import split_ref
from pytest_isobox.docker.ownership import (
    OWNER_LABEL,
    PERSISTENT_LABEL,
    Owner,
    is_orphan,
)
from pytest_isobox.docker.streams import FrameParser, demultiplex
from pytest_isobox.engine import (
    BuildError,
    BuildStep,
    ConflictError,
    ContainerError,
    ContainerNotFound,
    ContainerSpec,
    Engine,
    EngineUnavailable,
    ImageNotFound,
    MountSpec,
    NetworkAttachment,
    NetworkNotFound,
    PortSpec,
)
from pytest_isobox.processes import ProcessIdentity
from tests.conftest import needs_docker


def _frame(kind: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", kind, len(data)) + data


def test_demultiplex_keeps_streams_and_order() -> None:
    raw = _frame(1, b"out\n") + _frame(2, b"err\n") + _frame(1, b"") + _frame(1, b"x" * 70000)
    frames = list(demultiplex(io.BufferedReader(io.BytesIO(raw), buffer_size=7)))
    assert frames == [("stdout", b"out\n"), ("stderr", b"err\n"), ("stdout", b""),
                      ("stdout", b"x" * 70000)]


def test_demultiplex_rejects_a_truncated_frame() -> None:
    with pytest.raises(Exception, match="inside a 10-byte frame"):
        list(demultiplex(io.BytesIO(_frame(1, b"0123456789")[:-3])))


def test_frame_parser_reassembles_arbitrary_pieces() -> None:
    raw = _frame(1, b"hello") + _frame(2, b"world")
    parser = FrameParser()
    got = []
    for i in range(len(raw)):
        got += parser.feed(raw[i:i + 1])
    assert got == [("stdout", b"hello"), ("stderr", b"world")]


def test_json_stream_split_anywhere() -> None:
    raw = b'{"stream":"Step 1/2 : FROM x"}\r\n{"stream":"\\n"}{"aux":{"ID":"sha256:ab"}}\n'
    reader = io.BufferedReader(io.BytesIO(raw), buffer_size=3)
    assert [m.get("aux") for m in iter_json_stream(reader)] == [None, None, {"ID": "sha256:ab"}]


def test_create_body_maps_every_field() -> None:
    spec = ContainerSpec(
        image="img", command=["run"], entrypoint=[], env={"A": "1"}, working_dir="/w",
        user="nobody", hostname="h", name="n", labels={"l": "v"}, mem_limit=1 << 20, cpus=0.5,
        cpu_shares=256, pids_limit=10, init=True, tty=True, stdin_open=True,
        networks=[NetworkAttachment("one", ("a",)), NetworkAttachment("two")],
        ports=[PortSpec.parse("8080"), PortSpec.parse("0.0.0.0:9000:53/udp")],
        mounts=[MountSpec("bind", "/in", "/host", read_only=True),
                MountSpec("tmpfs", "/t", size=4096), MountSpec("volume", "/v", "vol")],
        stop_signal="SIGINT", stop_timeout=3, auto_remove=True, read_only=True,
    )
    body = create_body(spec, {"ours": "1"})
    host = body["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert body["Cmd"] == ["run"] and body["Entrypoint"] == []
    assert body["Env"] == ["A=1"] and body["WorkingDir"] == "/w" and body["User"] == "nobody"
    assert body["Hostname"] == "h" and body["Labels"]["l"] == "v" and body["Labels"]["ours"] == "1"
    assert body["Tty"] and body["OpenStdin"] and body["StopSignal"] == "SIGINT"
    assert body["StopTimeout"] == 3
    assert (host["Memory"], host["NanoCpus"], host["CpuShares"], host["PidsLimit"]) == (
        1 << 20, 500_000_000, 256, 10)
    assert host["Init"] is True and host["AutoRemove"] is False  # wait removes it
    assert body["Labels"]["io.isobox.auto-remove"] == "1"
    spec.persistent = True  # outlives its owner: Docker removes it on exit
    assert create_body(spec, {})["HostConfig"]["AutoRemove"] is True
    assert "io.isobox.auto-remove" not in create_body(spec, {})["Labels"]
    assert host["NetworkMode"] == "one"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"one": {"Aliases": ["a"]}}}
    assert host["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                                    "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "9000"}]}
    assert set(body["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert host["Mounts"] == [
        {"Type": "bind", "Target": "/in", "Source": "/host", "ReadOnly": True},
        {"Type": "tmpfs", "Target": "/t", "ReadOnly": False, "TmpfsOptions": {"SizeBytes": 4096}},
        {"Type": "volume", "Target": "/v", "Source": "vol", "ReadOnly": False},
    ]


def test_create_body_defers_to_the_image_when_unset() -> None:
    body = create_body(ContainerSpec(image="img"), {})
    for key in ("Cmd", "Entrypoint", "WorkingDir", "User", "Hostname", "StopSignal"):
        assert key not in body
    assert body["HostConfig"]["NetworkMode"] == "bridge"
    assert "NetworkingConfig" not in body
    assert "Memory" not in body["HostConfig"]
    named = create_body(ContainerSpec(image="img", network_mode="mynet"), {})
    assert named["NetworkingConfig"]["EndpointsConfig"] == {"mynet": {"Aliases": []}}
    assert create_body(ContainerSpec(image="img", network_mode="none"), {})[
        "HostConfig"]["NetworkMode"] == "none"


def test_parse_time_handles_nanoseconds_offsets_and_zero() -> None:
    assert parse_time("1970-01-01T00:00:01.500000000Z") == pytest.approx(1.5)
    assert parse_time("1970-01-01T01:00:02+01:00") == pytest.approx(2.0)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("") is None


def test_state_from_inspect() -> None:
    doc = {
        "Id": "abc", "Name": "/web", "Image": "sha256:1", "Created": "1970-01-01T00:00:10Z",
        "Config": {"Image": "img:1", "Labels": {"k": "v"}},
        "State": {"Status": "exited", "Pid": 0, "ExitCode": 137, "OOMKilled": True,
                  "StartedAt": "1970-01-01T00:00:11Z", "FinishedAt": "1970-01-01T00:00:12Z"},
        "NetworkSettings": {
            "Networks": {"bridge": {"IPAddress": "172.17.0.2"}, "none": {"IPAddress": ""}},
            "Ports": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49000"}], "81/tcp": None},
        },
    }
    state = state_from_inspect(doc)
    assert (state.name, state.image, state.status, state.pid) == ("web", "img:1", "exited", None)
    assert (state.exit_code, state.oom_killed) == (137, True)
    assert (state.created_at, state.started_at, state.finished_at) == (10.0, 11.0, 12.0)
    assert state.ips == {"bridge": "172.17.0.2"}
    assert state.ports == {"80/tcp": [("127.0.0.1", 49000)]}
    assert state.labels == {"k": "v"}


def test_owner_label_round_trip_and_liveness() -> None:
    me = Owner.current()
    assert Owner.parse(me.label) == me
    assert Owner.parse(me.label).is_alive()  # type: ignore[union-attr]
    reused = ProcessIdentity(me.process.pid, me.process.start - 1000)
    assert not Owner(me.host, reused).is_alive()  # a reused pid
    assert Owner.parse("garbage") is None
    assert not is_orphan({OWNER_LABEL: me.label})
    dead = Owner(me.host, reused).label
    assert is_orphan({OWNER_LABEL: dead})
    assert not is_orphan({OWNER_LABEL: dead, PERSISTENT_LABEL: "1"})
    assert not is_orphan({OWNER_LABEL: f"other-host:{os.getpid()}:100"})
    assert not is_orphan({"unrelated": "x"})


def _stream(*texts: str) -> list[dict]:
    return [{"stream": t} for t in texts]


def test_build_progress_reports_steps_and_cache() -> None:
    steps: list[BuildStep] = []
    progress = BuildProgress("Dockerfile", steps.append, lambda short: "sha256:" + short)
    for message in _stream("Step 1/3 : FROM base", "\n", " ---> 0123456789ab\n",
                           "Step 2/3 : RUN echo hi\n", " ---> Running in fedcba987654\n",
                           "hi\n", "Removing intermediate container fedcba987654\n",
                           " ---> 111111111111\n", "Step 3/3 : ENV A=1\n", " ---> Using cache\n",
                           " ---> 222222222222\n") + [{"aux": {"ID": "sha256:2222"}}]:
        progress.feed(message)
    assert progress.result() == "sha256:2222"
    assert [(s.index, s.total, s.instruction, s.cached) for s in steps] == [
        (1, 3, "FROM base", False), (2, 3, "RUN echo hi", False), (3, 3, "ENV A=1", True)]
    assert steps[1].output == "hi" and steps[1].image_id == "sha256:111111111111"


def test_build_progress_failure_names_step_and_last_lines() -> None:
    progress = BuildProgress("app.Dockerfile", None, str)
    for message in _stream("Step 1/1 : RUN make\n", " ---> Running in fedcba987654\n",
                           "\x1b[91mcc: error\n\x1b[0m"):
        progress.feed(message)
    progress.feed({"errorDetail": {"code": 2, "message": "returned a non-zero code: 2"},
                   "error": "returned a non-zero code: 2"})
    with pytest.raises(BuildError) as failure:
        progress.result()
    assert str(failure.value) == ("app.Dockerfile: step 1/1 (RUN make) failed: returned a "
                                  "non-zero code: 2\nlast output:\ncc: error")


def test_context_tar_leaves_out_ignored_files_but_keeps_the_dockerfile(tmp_path: Path) -> None:
    import tarfile

    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "b.txt").write_text("b")
    (tmp_path / "skip" / "keep.txt").write_text("k")
    (tmp_path / ".dockerignore").write_text("skip\n!skip/keep.txt\nDockerfile\n")
    body, size, name = context_tar(tmp_path, None)
    with body, tarfile.open(fileobj=body) as tar:
        names = sorted(tar.getnames())
        assert all(m.uid == 0 and m.gid == 0 for m in tar.getmembers())
    assert name == "Dockerfile" and size > 0
    assert names == [".dockerignore", "Dockerfile", "a.txt", "skip", "skip/keep.txt"]


def test_errors_map_to_our_types() -> None:
    assert isinstance(error_for(404, "No such image: x"), ImageNotFound)
    assert isinstance(error_for(404, "No such container: x", "image"), ContainerNotFound)
    assert isinstance(error_for(404, "network foo not found"), NetworkNotFound)
    assert isinstance(error_for(404, "whatever", "container"), ContainerNotFound)
    assert isinstance(error_for(409, "name is already in use"), ConflictError)
    assert isinstance(error_for(409, "Container abc is not running"), ContainerError)
    assert isinstance(error_for(500, "boom", "build"), BuildError)
    busy = "error while removing network: network n id 1 has active endpoints"
    assert isinstance(error_for(403, busy, "network"), ConflictError)


def test_api_version_is_the_older_of_ours_and_the_daemons() -> None:
    assert negotiate_api_version("unix:///s", "1.41") == "1.41"
    assert negotiate_api_version("unix:///s", "1.47") == MAX_API_VERSION
    assert negotiate_api_version("unix:///s", "1.35") == "1.35"
    with pytest.raises(EngineUnavailable, match="speaks API 1.24; isobox needs 1.30"):
        negotiate_api_version("unix:///s", "1.24")
    with pytest.raises(EngineUnavailable, match="reported API version ''"):
        negotiate_api_version("unix:///s", "")


def test_split_ref() -> None:
    assert split_ref("busybox") == ("busybox", "latest")
    assert split_ref("busybox:1.36") == ("busybox", "1.36")
    assert split_ref("localhost:5000/app") == ("localhost:5000/app", "latest")
    assert split_ref("localhost:5000/app:v2") == ("localhost:5000/app", "v2")


def test_no_daemon_is_engine_unavailable_naming_the_address(tmp_path: Path) -> None:
    missing = tmp_path / "docker.sock"
    with pytest.raises(EngineUnavailable, match=f"no Docker daemon at unix://{missing}"):
        DockerClient(f"unix://{missing}")
    with pytest.raises(EngineUnavailable, match="no Docker daemon at tcp://127.0.0.1:1"):
        DockerClient("tcp://127.0.0.1:1")


def test_every_engine_method_is_implemented_with_its_signature() -> None:
    """The protocol's parameters, in order and kind, are all accepted (extra ones optional)."""
    for name, member in vars(Engine).items():
        if name.startswith("_") or not callable(member):
            continue
        ours = inspect.signature(getattr(DockerEngine, name)).parameters
        for param in inspect.signature(member).parameters.values():
            assert param.name in ours, f"DockerEngine.{name} lacks {param.name}"
            assert ours[param.name].kind == param.kind, f"DockerEngine.{name}({param.name})"
            assert (ours[param.name].default is inspect.Parameter.empty) == (
                param.default is inspect.Parameter.empty), f"DockerEngine.{name}({param.name})"
        extra = [p for n, p in ours.items() if n not in inspect.signature(member).parameters]
        assert all(p.default is not inspect.Parameter.empty for p in extra), name


@needs_docker
def test_a_forked_child_opens_its_own_connections() -> None:
    client = DockerClient()
    try:
        client.request("GET", "/_ping")  # leaves a pooled connection behind
        parents = client._idle[0]
        pid = os.fork()
        if pid == 0:  # the child: must not talk on the parent's socket
            code = 2
            try:
                ok = client.request("GET", "/_ping") == b"OK"
                code = 0 if ok and client._idle[-1] is not parents else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert client.request("GET", "/_ping") == b"OK"  # the parent's connection still works
    finally:
        client.close()


def test_create_body_maps_the_run_options_of_issue_15() -> None:
    from pytest_isobox.engine import DeviceSpec, HealthcheckSpec, RestartPolicy

    spec = ContainerSpec(
        image="img", cap_add=["CAP_NET_ADMIN"], cap_drop=["CAP_CHOWN"], privileged=True,
        extra_hosts=["db:10.0.0.2", "gw:host-gateway"], dns=["10.0.0.53"],
        dns_search=["corp.test"], dns_options=["ndots:2"], publish_all=True, expose=["7000/tcp"],
        ports=[PortSpec.parse("8080")], shm_size=1 << 24, sysctls={"net.ipv4.ip_forward": "1"},
        devices=[DeviceSpec("/dev/loop-control", "/dev/lc", "rw")], network_mode="appnet",
        ip="10.5.0.9", restart=RestartPolicy("on-failure", 3),
        healthcheck=HealthcheckSpec(("CMD-SHELL", "true"), interval=1.5, retries=2))
    body = create_body(spec, {}, image_exposed=["8080/tcp", "9000/udp"])
    host = body["HostConfig"]
    assert host["CapAdd"] == ["CAP_NET_ADMIN"] and host["CapDrop"] == ["CAP_CHOWN"]
    assert host["Privileged"] is True and "PublishAllPorts" not in host
    assert host["ExtraHosts"] == ["db:10.0.0.2", "gw:host-gateway"]
    assert (host["Dns"], host["DnsSearch"], host["DnsOptions"]) == \
        (["10.0.0.53"], ["corp.test"], ["ndots:2"])
    assert host["ShmSize"] == 1 << 24 and host["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert host["Devices"] == [{"PathOnHost": "/dev/loop-control", "PathInContainer": "/dev/lc",
                                "CgroupPermissions": "rw"}]
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    # every exposed port has its own loopback binding: Docker's -P would bind 0.0.0.0
    assert host["PortBindings"] == {key: [{"HostIp": "127.0.0.1", "HostPort": ""}]
                                    for key in ("8080/tcp", "9000/udp", "7000/tcp")}
    assert set(body["ExposedPorts"]) == {"8080/tcp", "9000/udp", "7000/tcp"}
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 1_500_000_000,
                                   "Timeout": 0, "Retries": 2, "StartPeriod": 0}
    assert body["NetworkingConfig"]["EndpointsConfig"]["appnet"]["IPAMConfig"] == \
        {"IPv4Address": "10.5.0.9"}
