"""The endpoints past the first server: logs since/until/timestamps/tail, rename,
pause/unpause, top, update, network connect/disconnect, image push and prune, container
prune."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.server.conftest import SERVE_IMAGE, _wait_listening, serve

docker = pytest.importorskip("docker")


def test_logs_since_until_timestamps_tail(client) -> None:
    script = "mkfifo /go; echo early; read x < /go; echo late; exec sleep 300"
    c = client.containers.run(SERVE_IMAGE, ["sh", "-c", script], detach=True)
    follow = c.logs(stream=True, follow=True)
    assert next(follow) == b"early\n"  # written before the test's mark
    follow.close()
    mark = time.time()
    c.exec_run(["sh", "-c", "echo go > /go"])
    for line in c.logs(stream=True, follow=True):
        if line == b"late\n":
            break
    assert c.logs(since=mark) == b"late\n"
    assert c.logs(until=mark) == b"early\n"
    assert c.logs(tail=1) == b"late\n"
    stamped = c.logs(timestamps=True).decode().splitlines()
    assert [ln.split(" ", 1)[1] for ln in stamped] == ["early", "late"]
    when = stamped[0].split(" ", 1)[0]
    assert when.endswith("Z") and len(when) == len("2026-12-03T13:17:22.907955712Z")
    assert abs(time.mktime(time.strptime(when[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
               - mark) < 3600


def test_rename_pause_unpause_top(client) -> None:
    c = client.containers.run(SERVE_IMAGE, ["sleep", "300"], detach=True, name="before")
    c.rename("after")
    c.reload()
    assert c.name == "after"
    other = client.containers.create(SERVE_IMAGE, ["true"], name="taken")
    with pytest.raises(docker.errors.APIError) as err:
        c.rename("taken")
    assert err.value.status_code == 409 and "already in use" in str(err.value)
    other.remove()
    c.pause()
    c.reload()
    assert c.status == "paused" and c.attrs["State"]["Paused"] is True
    assert "(Paused)" in client.api.containers(filters={"id": c.id})[0]["Status"]
    c.unpause()
    c.reload()
    assert c.status == "running"
    top = c.top()
    assert "CMD" in top["Titles"] or "COMMAND" in top["Titles"]
    assert any("sleep 300" in " ".join(p) for p in top["Processes"])
    stopped = client.containers.create(SERVE_IMAGE, ["true"])
    with pytest.raises(docker.errors.APIError) as err:
        stopped.top()
    assert err.value.status_code == 409


def _memory_limit_file(cid: str) -> int:
    """The container's memory limit as its cgroup holds it (v1 or v2)."""
    from pytest_isobox.native.cgroups import open_cgroup

    cgroup = open_cgroup(f"isobox/{cid}")
    hierarchy = cgroup.layout.where("memory")
    name = "memory.limit_in_bytes" if hierarchy.version == 1 else "memory.max"
    return int((hierarchy.mountpoint / cgroup.name / name).read_text())


def test_update_limits_and_restart_policy(client, served: str) -> None:
    c = client.containers.run(SERVE_IMAGE, ["sleep", "300"], detach=True, mem_limit="64m")
    assert _memory_limit_file(c.id) == 64 << 20
    c.update(mem_limit="32m")  # lowered
    c.reload()
    assert c.attrs["HostConfig"]["Memory"] == 32 << 20
    assert _memory_limit_file(c.id) == 32 << 20
    if shutil.which("docker"):  # raised, through the CLI, with a restart policy
        env = {**os.environ, "DOCKER_HOST": served, "DOCKER_CONFIG": "/nonexistent-isobox"}
        done = subprocess.run(["docker", "update", "--memory", "96m", "--memory-swap", "96m",
                               "--pids-limit", "50", "--restart", "on-failure:3", c.id],
                              env=env, check=False, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        c.reload()
        assert _memory_limit_file(c.id) == 96 << 20
        assert c.attrs["HostConfig"]["PidsLimit"] == 50
        assert c.attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure",
                                                          "MaximumRetryCount": 3}
    with pytest.raises(docker.errors.APIError) as err:
        c.update(mem_limit=-5)
    assert err.value.status_code == 400
    created = client.containers.create(SERVE_IMAGE, ["sleep", "300"])
    created.update(mem_limit="48m")  # not running: used at its start
    created.start()
    assert _memory_limit_file(created.id) == 48 << 20


def test_prune_containers_and_images(client) -> None:
    keep = client.containers.run(SERVE_IMAGE, ["sleep", "300"], detach=True)
    done = client.containers.run(SERVE_IMAGE, ["true"], detach=True, labels={"p": "1"})
    done.wait()
    left = client.containers.run(SERVE_IMAGE, ["true"], detach=True)
    left.wait()
    pruned = client.containers.prune(filters={"label": "p=1"})
    assert pruned["ContainersDeleted"] == [done.id]
    pruned = client.containers.prune()
    assert pruned["ContainersDeleted"] == [left.id]
    assert [c.id for c in client.containers.list(all=True)] == [keep.id]
    import io

    built, _ = client.images.build(fileobj=io.BytesIO(
        f"FROM {SERVE_IMAGE}\nRUN echo x > /x\n".encode()))
    assert built.id in [i.id for i in client.images.list(all=True)]
    report = client.images.prune()
    assert {"Deleted": built.id} in report["ImagesDeleted"]
    assert SERVE_IMAGE in [t for i in client.images.list() for t in i.tags]


@pytest.fixture
def served_online(tmp_path: Path, isobox_home: Path, busybox_rootfs: Path,
                  monkeypatch: pytest.MonkeyPatch):
    """A server allowed to reach registries (this test's, on loopback only)."""
    monkeypatch.delenv("ISOBOX_OFFLINE", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    with serve(tmp_path, isobox_home, busybox_rootfs) as host:
        yield host


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")
def test_docker_cli_push_to_a_registry_on_loopback(served_online: str, tmp_path: Path) -> None:
    from tests.registry.servers import Registry, have_registry

    if not have_registry():
        pytest.skip("docker-registry is not installed")
    registry = Registry(tmp_path / "registry").start()
    try:
        env = {**os.environ, "DOCKER_HOST": served_online, "DOCKER_CONFIG": str(tmp_path)}
        target = f"{registry.netloc}/served/busybox:pushed"
        subprocess.run(["docker", "tag", SERVE_IMAGE, target], env=env, check=True,
                       capture_output=True, timeout=60)
        done = subprocess.run(["docker", "push", target], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert "pushed: digest: sha256:" in done.stdout
        with urllib.request.urlopen(f"http://{registry.netloc}/v2/served/busybox/tags/list",
                                    timeout=30) as resp:
            assert json.load(resp)["tags"] == ["pushed"]
    finally:
        registry.stop()


@contextlib.contextmanager
def _serve_docker_engine(tmp_path: Path, isobox_home: Path):
    """`isobox serve --engine docker`: the API served from the system's dockerd."""
    from tests.conftest import docker_available

    if not docker_available():
        pytest.skip("no Docker daemon answers")
    sock = tmp_path / "docker-engine.sock"
    log_path = tmp_path / "docker-engine.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pytest_isobox.server", "-H",
                                 f"unix://{sock}", "--engine", "docker"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_listening(proc, log_path)
            yield f"unix://{sock}"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def test_network_connect_disconnect_through_the_seam(tmp_path: Path, isobox_home: Path,
                                                     busybox_rootfs: Path) -> None:
    """The native engine's connect comes with another branch; the route is tested on the
    docker engine's (the same seam method), and the native one must say what it lacks."""
    from pytest_isobox.engine import open_engine

    tag = f"isobox-test/serve-connect:{os.getpid()}"
    daemon = open_engine("docker")
    try:
        daemon.import_rootfs(busybox_rootfs, tag)
        with _serve_docker_engine(tmp_path, isobox_home) as host:
            client = docker.DockerClient(base_url=host, timeout=60)
            net = client.networks.create(f"isobox-serve-connect-{os.getpid()}")
            c = client.containers.run(tag, ["sleep", "300"], detach=True)
            try:
                net.connect(c, aliases=["joined"])
                c.reload()
                endpoint = c.attrs["NetworkSettings"]["Networks"][net.name]
                assert "joined" in endpoint["Aliases"] and endpoint["IPAddress"]
                net.disconnect(c)
                c.reload()
                assert net.name not in c.attrs["NetworkSettings"]["Networks"]
                with pytest.raises(docker.errors.NotFound):
                    net.connect("no-such-container")
            finally:
                c.remove(force=True)
                net.remove()
                client.close()
    finally:
        with contextlib.suppress(Exception):
            daemon.remove_image(tag, force=True)
        daemon.close()


def test_stats_stream_one_a_second_until_the_container_stops(client) -> None:
    c = client.containers.run(SERVE_IMAGE, ["sleep", "300"], detach=True)
    stream = c.stats(stream=True, decode=True)
    first, second = next(stream), next(stream)
    assert second["precpu_stats"] == first["cpu_stats"]  # the CLI's CPU % is their delta
    assert second["pids_stats"]["current"] == 1 and second["memory_stats"]["limit"] > 0
    c.kill()
    assert [s["id"] for s in stream] in ([], [c.id])  # ends with the container
    one = c.stats(stream=False)
    assert one["id"] == c.id and one["precpu_stats"]["cpu_usage"]["total_usage"] == 0


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")
def test_stdin_through_the_docker_engines_streams(tmp_path: Path, isobox_home: Path,
                                                  busybox_rootfs: Path) -> None:
    """`isobox serve --engine docker`: run -i and exec -i relayed by the docker engine's
    exec_stream/start_stream over the daemon's own hijacked streams."""
    from pytest_isobox.engine import open_engine

    tag = f"isobox-test/serve-stdin:{os.getpid()}"
    daemon = open_engine("docker")
    try:
        daemon.import_rootfs(busybox_rootfs, tag)
        with _serve_docker_engine(tmp_path, isobox_home) as host:
            env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": "/nonexistent-isobox"}

            def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
                return subprocess.run(["docker", *args], env=env, input=stdin, text=True,
                                      capture_output=True, timeout=120, check=False)

            done = cli("run", "-i", "--rm", tag, "sh", "-c", "tr a-z A-Z; exit 5",
                       stdin="via-dockerd\n")
            assert (done.returncode, done.stdout) == (5, "VIA-DOCKERD\n"), done.stderr
            name = f"isobox-serve-stdin-{os.getpid()}"
            assert cli("run", "-d", "--name", name, tag, "sleep", "300").returncode == 0
            try:
                done = cli("exec", "-i", name, "sh", "-c", "cat; echo end >&2", stdin="x\n")
                assert (done.returncode, done.stdout, done.stderr) == (0, "x\n", "end\n")
            finally:
                cli("rm", "-f", name)
    finally:
        with contextlib.suppress(Exception):
            daemon.remove_image(tag, force=True)
        daemon.close()


def test_network_and_volume_prune_system_df_and_auth(client) -> None:
    """The remaining endpoint groups' verbs through docker-py: networks and volumes pruned
    (in use ones kept), disk usage listed, a login answered."""
    used = client.networks.create("served-used")
    unused = client.networks.create("served-unused")
    client.containers.run(SERVE_IMAGE, ["sleep", "300"], detach=True, network=used.name)
    client.volumes.create("served-kept")
    client.volumes.create("served-gone")
    client.containers.run(SERVE_IMAGE, ["sleep", "300"], detach=True,
                          volumes={"served-kept": {"bind": "/data"}})
    try:
        gone = client.networks.prune()["NetworksDeleted"] or []
        assert unused.name in gone and used.name not in gone
        deleted = client.volumes.prune()["VolumesDeleted"] or []
        assert "served-gone" in deleted and "served-kept" not in deleted
        usage = client.df()
        assert usage["LayersSize"] > 0 and any(SERVE_IMAGE in i["RepoTags"]
                                               for i in usage["Images"])
        assert client.login("someone", "secret", registry="127.0.0.1:1")["Status"] \
            == "Login Succeeded"
    finally:
        for container in client.containers.list(all=True):
            container.remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            used.remove()
        with contextlib.suppress(docker.errors.APIError):
            client.volumes.get("served-kept").remove()
