"""NativeEngine in rootless mode, used by a throwaway non-root user: images, builds, run,
exec, file ownership, published ports, named networks, the limits policy and the sweep after
kill -9. Each scenario runs in a child that is the user (see rootless_users)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import pytest_isobox.builder.builder  # noqa: F401 - loaded before the user's child forks
from pytest_isobox.engine import (
    ContainerSpec,
    EngineUnavailable,
    MountSpec,
    NetworkAttachment,
    PortSpec,
)
from pytest_isobox.native.engine import NativeEngine
from tests.native.rootless_users import ThrowawayUser, run_as, throwaway_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates throwaway users: needs root")


@pytest.fixture(scope="module", params=[True, False], ids=["subids", "single-id"])
def user(request: pytest.FixtureRequest) -> ThrowawayUser:
    with throwaway_user(subids=request.param, rootfs=True) as made:
        yield made


def _output(engine: NativeEngine, cid: str) -> str:
    return b"".join(data for _, data in engine.logs(cid)).decode()


def _run(engine: NativeEngine, image: str, script: str, **spec: object) -> tuple[int, str]:
    state = engine.run(ContainerSpec(image=image, command=["sh", "-c", script], **spec))
    code = engine.wait(state.id)
    out = _output(engine, state.id)
    engine.remove(state.id)
    return code, out


def _images_and_run(rootfs: str) -> dict:
    """Import, run, exec, build (a RUN step, then all cached)."""
    found: dict = {}
    with NativeEngine() as engine:
        found["rootless"] = engine.rootless
        engine.import_rootfs(rootfs, "bb:latest")
        found["run"] = _run(engine, "bb", "id -u; echo $$; hostname", network_mode="none")
        context = Path(rootfs).parent / "ctx"
        context.mkdir(exist_ok=True)
        (context / "Dockerfile").write_text(
            "FROM bb\nRUN mkdir /data && echo hello > /data/hello.txt\n"
            "CMD [\"cat\", \"/data/hello.txt\"]\n")
        built = engine.build(context, tag="built:1")
        found["build"] = _run(engine, built, "cat /data/hello.txt", network_mode="none")
        cached: list[bool] = []
        engine.build(context, tag="built:1", on_step=lambda s: cached.append(s.cached))
        found["cached"] = cached
        state = engine.run(ContainerSpec(image="bb", command=["sleep", "30"],
                                         network_mode="none"))
        result = engine.exec(state.id, ["sh", "-c", "echo in-exec; id -u"])
        found["exec"] = (result.exit_code, result.stdout.decode())
        engine.remove(state.id, force=True)
    return found


def test_import_run_exec_build(user: ThrowawayUser) -> None:
    found = run_as(user, _images_and_run, str(user.home / "rootfs"))
    assert found["rootless"]
    code, out = found["run"]
    uid, pid, _hostname = out.split()
    assert (code, uid, pid) == (0, "0", "1")
    assert found["build"] == (0, "hello\n")
    assert found["cached"][1:] and all(found["cached"][1:])  # (FROM is never "cached")
    assert found["exec"] == (0, "in-exec\n0\n")


def _ownership(tar: str) -> tuple[int, str]:
    with NativeEngine() as engine:
        engine.import_rootfs(tar, "owned")
        return _run(engine, "owned", "stat -c '%u:%g %n' /home/nobody /home/nobody/note; "
                    "su nobody -s /bin/sh -c 'cat /home/nobody/note; id -u'",
                    network_mode="none")


def test_files_owned_by_nobody_in_the_image_stay_owned_by_nobody(user: ThrowawayUser) -> None:
    if not user.subids:
        pytest.skip("a single-id namespace has no nobody (see the single-id note)")
    rootfs = user.home / "owned-rootfs"
    subprocess.run(["cp", "-a", str(user.home / "rootfs"), str(rootfs)], check=True)
    (rootfs / "home" / "nobody").mkdir(parents=True)
    (rootfs / "home" / "nobody" / "note").write_text("nobody's\n")
    subprocess.run(["chown", "-R", "65534:65534", str(rootfs / "home" / "nobody")], check=True)
    subprocess.run(["chmod", "700", str(rootfs / "home" / "nobody")], check=True)
    tar = user.home / "owned.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    os.chown(tar, user.uid, user.gid)
    code, out = run_as(user, _ownership, str(tar))
    assert code == 0, out
    assert out.splitlines() == ["65534:65534 /home/nobody", "65534:65534 /home/nobody/note",
                                "nobody's", "65534"]


def _volume_of_nobody() -> tuple[int, list[str]]:
    """A container leaves files of nobody (a subordinate id on the host) in a named volume;
    removing the volume still works."""
    with NativeEngine() as engine:
        code, _ = _run(engine, "bb", "mkdir /v/x && touch /v/x/f && chown -R 65534 /v/x && "
                       "chmod 700 /v/x", network_mode="none",
                       mounts=[MountSpec("volume", "/v", "data")])
        engine.volume_remove("data")
        return code, engine.volumes()


def test_volume_with_files_of_other_ids_is_removable(user: ThrowawayUser) -> None:
    if not user.subids:
        pytest.skip("a single-id namespace has no nobody (see the single-id note)")
    run_as(user, _import_bb, str(user.home / "rootfs"))
    assert run_as(user, _volume_of_nobody) == (0, [])


def _import_bb(rootfs: str) -> None:
    with NativeEngine() as engine:
        engine.import_rootfs(rootfs, "bb:latest")


def _networks() -> dict:
    found: dict = {}
    with NativeEngine() as engine:
        engine.network_create("app")
        engine.network_create("other")
        server = engine.run(ContainerSpec(
            image="bb", name="web",
            command=["sh", "-c", "while true; do echo hi-from-web | nc -l -p 8080; done"],
            networks=[NetworkAttachment("app", ("www",))], ports=[PortSpec(8080)]))
        host, port = server.ports["8080/tcp"][0]
        found["host"] = host
        deadline = time.monotonic() + 10
        reply = b""
        while time.monotonic() < deadline and not reply:
            try:
                with socket.create_connection((host, port), timeout=2) as conn:
                    reply = conn.recv(100)
            except OSError:
                pass
            if not reply:
                time.sleep(0.05)
        found["published"] = reply.decode().strip()
        retry = ("for n in web www; do for i in $(seq 50); do r=$(nc -w 2 $n 8080 </dev/null);"
                 ' [ -n "$r" ] && echo "$n:$r" && break; sleep 0.1; done; done')  # (the server
        # answers one connection at a time; the next try finds it listening again)
        found["by_name"] = _run(engine, "bb", retry, networks=[NetworkAttachment("app")])
        found["other"] = _run(engine, "bb", "nc -w 2 web 8080 </dev/null || echo unreachable",
                              networks=[NetworkAttachment("other")])
        engine.remove(server.id, force=True)
        engine.network_remove("app")
        engine.network_remove("other")
    return found


def test_published_port_and_names_on_a_network(user: ThrowawayUser) -> None:
    run_as(user, _import_bb, str(user.home / "rootfs"))
    found = run_as(user, _networks)
    assert found["host"] == "127.0.0.1"
    assert found["published"] == "hi-from-web"
    assert {"web:hi-from-web", "www:hi-from-web"} <= set(found["by_name"][1].split())
    assert "hi-from-web" not in found["other"][1]


def _limits(mode: str) -> tuple[str, str]:
    try:
        with NativeEngine(limits=mode) as engine:
            state = engine.run(ContainerSpec(image="bb", command=["true"], network_mode="none",
                                             mem_limit=64 * 1024**2, pids_limit=10))
            engine.wait(state.id)
            return "ran", engine.inspect(state.id)["Isobox"]["Limits"]
    except EngineUnavailable as exc:
        return "refused", str(exc)


def test_limits_without_delegation_fail_clearly_or_run_best_effort(user: ThrowawayUser) -> None:
    run_as(user, _import_bb, str(user.home / "rootfs"))
    outcome, message = run_as(user, _limits, "strict")
    assert outcome == "refused"
    assert "memory limit 67108864" in message and "--isobox-limits=best-effort" in message
    outcome, note = run_as(user, _limits, "best-effort")
    assert outcome == "ran"
    assert note.startswith("no limits applied; skipped memory: memory limit 67108864")


def _start_and_report(rootfs: str, report: str) -> None:
    engine = NativeEngine()
    engine.import_rootfs(rootfs, "bb:latest")
    state = engine.run(ContainerSpec(image="bb", command=["sleep", "300"],
                                     ports=[PortSpec(9000)]))
    engine.network_create("made-by-the-run")  # no container on it: only a reaper takes it
    Path(report + ".tmp").write_text(f"{state.id} {state.pid}\n")
    os.rename(report + ".tmp", report)  # whole when it appears: the test waits for it
    time.sleep(300)  # ended with SIGKILL by the test, by pid


def _networks_left() -> list[str]:
    with NativeEngine(read_only=True) as engine:
        return [n.name for n in engine.networks() if n.name not in ("bridge", "host", "none")]


def _sweep() -> tuple[list[str], list[str]]:
    with NativeEngine() as engine:
        return engine.swept, [c.id for c in engine.containers(all=True)]


def test_kill_9_of_the_owner_leaves_nothing_its_reaper_does_not_take(user: ThrowawayUser) -> None:
    report = user.home / "started"
    pid = os.fork()
    if pid == 0:  # the test's own child, which becomes the owner and is killed below
        try:
            run_as(user, _start_and_report, str(user.home / "rootfs"), str(report))
        finally:
            os._exit(0)
    deadline = time.monotonic() + 30
    while not report.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert report.exists()
    cid, container_pid = report.read_text().split()
    owner = next(p for p in user.processes() if p.ppid() == pid)
    os.kill(owner.pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{container_pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{container_pid}")  # died with its owner
    while user.processes() and time.monotonic() < deadline:  # its monitor cleans up, then ends
        time.sleep(0.02)
    assert [p.pid for p in user.processes()] == []  # no monitor, agent, relay, keeper, reaper
    assert run_as(user, _networks_left) == []  # the run's reaper took its network, no sweep
    swept, left = run_as(user, _sweep)
    assert left == []  # removed by its monitor, or else by this sweep
    assert all(cid[:12] in line for line in swept if "container" in line)


def _connect_and_disconnect() -> dict:
    found: dict = {}
    with NativeEngine() as engine:
        engine.network_create("first")
        engine.network_create("second")
        box = engine.run(ContainerSpec(image="bb", command=["sleep", "300"],
                                       networks=[NetworkAttachment("first")]))
        peer = engine.run(ContainerSpec(image="bb", command=["sleep", "300"], name="peer",
                                        networks=[NetworkAttachment("second")]))
        try:
            engine.network_connect("second", box.id, aliases=["extra"])
            found["connected"] = engine.exec(box.id, ["ip", "-o", "-4", "addr"]).stdout.decode()
            found["ping"] = engine.exec(box.id, ["ping", "-c", "1", "-W", "2", "peer"]).exit_code
            found["by_alias"] = engine.exec(peer.id, ["ping", "-c", "1", "-W", "2",
                                                      "extra"]).exit_code
            engine.network_disconnect("second", box.id)
            found["left"] = engine.exec(box.id, ["ip", "-o", "-4", "addr"]).stdout.decode()
        finally:
            engine.remove(box.id, force=True)
            engine.remove(peer.id, force=True)
            engine.network_remove("first")
            engine.network_remove("second")
    return found


def test_network_connect_and_disconnect_of_a_rootless_container(user: ThrowawayUser) -> None:
    run_as(user, _import_bb, str(user.home / "rootfs"))
    found = run_as(user, _connect_and_disconnect)
    assert "eth1" in found["connected"]  # a second interface, on the second network
    assert found["ping"] == 0 and found["by_alias"] == 0  # names resolve both ways
    assert "eth1" not in found["left"] and "eth0" in found["left"]
