"""Rootless containers through isobox-shim: the shim enters the home's user namespace before
its pid namespace, and the container it starts is the one the Python runner starts (ids, id
maps, mounts, capabilities, limits), whether its shim was spawned for it or waited in the
pool. Each scenario runs in a child that is a throwaway user (see rootless_users)."""

from __future__ import annotations

import os
import re
import select
import socket
import time
from pathlib import Path

import psutil
import pytest

from pytest_isobox.engine import ContainerSpec, PortSpec
from pytest_isobox.native.engine import NativeEngine
from tests.native.rootless_users import ThrowawayUser, process_gone, run_as, throwaway_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates throwaway users: needs root")

PROBE = r"""
awk '{ s = $5 " " $6; for (i = 7; $i != "-"; i++) ; print s " " $(i+1) " " $(i+3) }' \
  /proc/self/mountinfo
echo ---
grep -E '^(Cap|NoNewPrivs|Seccomp|Uid|Gid|Groups)' /proc/self/status
echo ---
cat /proc/self/uid_map /proc/self/gid_map; id; echo $$; hostname; ulimit -n
echo ---
cat /proc/net/dev | tail -n +3 | cut -d: -f1 | sort
"""


@pytest.fixture(scope="module", params=[True, False], ids=["subids", "single-id"])
def user(request: pytest.FixtureRequest) -> ThrowawayUser:
    with throwaway_user(subids=request.param, rootfs=True) as made:
        yield made


def _views(rootfs: str, user_name: str) -> dict:
    """Per executor: the program of a running container's monitor, and the probe's output of
    each run (the first shim is spawned for its container, later ones come from the pool)."""
    found: dict = {}
    for executor in ("shim", "python"):
        os.environ["ISOBOX_SHIM"] = "1" if executor == "shim" else "0"
        with NativeEngine() as engine:
            engine.import_rootfs(rootfs, "bb:latest")
            running = engine.run(ContainerSpec(image="bb", command=["sleep", "600"],
                                               network_mode="none"))
            monitor = engine._find(running.id).read_state()["monitor"]["pid"]
            found[executor] = {"monitor": os.path.basename(os.readlink(f"/proc/{monitor}/exe"))}
            engine.remove(running.id, force=True)
            runs = []
            for network in ("none", "none", "host", "bridge"):
                state = engine.run(ContainerSpec(
                    image="bb", command=["sh", "-c", PROBE], network_mode=network,
                    user=user_name, hostname="same", security_opt=["no-new-privileges"]))
                code = engine.wait(state.id)
                out = b"".join(d for _, d in engine.logs(state.id)).decode()
                engine.remove(state.id)
                out = re.sub(r"(lowerdir|upperdir|workdir)=[^,]*", r"\1=X", out)
                if network == "host":  # the host's interfaces come and go: only their count
                    head, _, links = out.rpartition("---\n")
                    out = f"{head}---\n{'several' if len(links.split()) > 1 else links}\n"
                runs.append((code, out))
            found[executor].update(runs=runs, rootless=engine.rootless)
    return found


def test_a_rootless_container_is_started_by_the_shim_as_by_the_python_runner(
        user: ThrowawayUser) -> None:
    user_name = "nobody" if user.subids else ""  # (a single-id namespace has no nobody)
    found = run_as(user, _views, str(user.home / "rootfs"), user_name)
    shim, python = found["shim"], found["python"]
    assert shim["rootless"] and python["rootless"]
    assert shim["monitor"].startswith("isobox-shim-")  # the compiled shim's file name
    assert python["monitor"].startswith("python")
    assert shim["runs"] == python["runs"]
    (code, none_view), (_, again), (_, host_view), (_, bridge_view) = shim["runs"]
    assert code == 0 and again == none_view
    mountinfo, status, ids, links = none_view.split("---\n")
    assert " overlay " in mountinfo and "/dev/pts rw," in mountinfo
    assert "NoNewPrivs:\t1" in status and "Seccomp:\t2" in status
    if user.subids:
        assert re.search(r"CapEff:\t0+\n", status)  # nobody holds no capability
        assert "uid=65534(nobody)" in ids
    else:
        assert re.search(r"CapEff:\t0+a80425fb\n", status)  # root's Docker default set
        assert "uid=0(root)" in ids and "setgroups" not in ids
    assert ids.split("\n")[0].split()[:2] == ["0", str(user.uid)]  # root inside is the user
    assert "\n1\nsame\n" in ids  # PID 1 of its own pid namespace, its own hostname
    assert links.split() == ["lo"]  # network none: loopback alone
    assert host_view.split("---\n")[3] == "several\n"  # host: the host's interfaces
    assert sorted(bridge_view.split("---\n")[3].split()) == ["eth0", "lo"]  # by its agent


def _published_reply(host: str, port: int) -> bytes:
    """The first bytes the server behind a published port sends, once it listens."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as conn:
                reply = conn.recv(100)
        except OSError:
            reply = b""
        if reply:
            return reply
        time.sleep(0.05)  # the relay refused: the server is not listening yet
    return b""


def _persistent_outlives_its_engine() -> dict:
    """A persistent container on a network, with a published port, started by the shim; its
    engine closed: the holder stays (the shim pins it, as a Python monitor does) and so does
    the port's relay (its network agent lives as long as the shim) until it is removed."""
    from pytest_isobox.native.rootless import holder

    runtime = NativeEngine().home / "runtime" / "rootless"
    with NativeEngine() as engine:
        engine.import_rootfs(str(Path.home() / "rootfs"), "bb:latest")
        state = engine.run(ContainerSpec(
            image="bb", command=["sh", "-c", "while true; do echo hi | nc -l -p 8080; done"],
            ports=[PortSpec(8080)], persistent=True))
        monitor = engine._find(state.id).read_state()["monitor"]["pid"]
        exe = os.path.basename(os.readlink(f"/proc/{monitor}/exe"))
        info = holder.read_info(runtime)
        host, port = state.ports["8080/tcp"][0]
    kept = info is not None and info.alive() and holder.read_info(runtime) == info
    reply = _published_reply(host, port)
    with NativeEngine() as engine:
        running = engine.state(state.id).running
        engine.remove(state.id, force=True)
    return {"exe": exe, "kept": kept, "running": running, "holder": info.pid if info else 0,
            "reply": reply}


def test_the_shim_keeps_the_holder_and_the_relay_while_its_container_runs(
        user: ThrowawayUser) -> None:
    found = run_as(user, _persistent_outlives_its_engine)
    assert found["exe"].startswith("isobox-shim-")
    assert found["kept"] and found["running"]
    assert found["reply"] == b"hi\n"
    assert process_gone(found["holder"])  # no engine and no container left: it ended
    assert [p.pid for p in user.processes() if p.status() != psutil.STATUS_ZOMBIE] == []


def _agents(engine: NativeEngine) -> set[int]:
    """The pids of this user's network agents (isobox-agent), zombies aside, once the
    engine's spare one exists: its agent maker forks it on its own time, and answers its
    pid when it has (the child of the maker may not have taken its name yet)."""
    if engine._agent is not None:
        assert engine._agent.pid
    maker = engine._agent_maker.pid if engine._agent_maker is not None else None
    return {p.pid for p in psutil.process_iter(["name", "uids", "status", "ppid"])
            if (p.info["name"] == "isobox-agent" or p.info["ppid"] == maker)
            and p.info["uids"].real == os.getuid() and p.info["status"] != psutil.STATUS_ZOMBIE}


def _one_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """The pids of `pids` still running once one of them has ended (a pidfd per process)."""
    fds: dict[int, int] = {}
    try:
        for pid in pids:
            try:
                fds[os.pidfd_open(pid)] = pid
            except ProcessLookupError:  # ended already
                return {p for p in pids if p != pid and not process_gone(p, timeout=0)}
        select.select(list(fds), [], [], timeout)
        return {pid for fd, pid in fds.items() if not select.select([fd], [], [], 0)[0]}
    finally:
        for fd in fds:
            os.close(fd)


def _agents_forked_ahead() -> dict:
    """Two containers on the default network: the second one's agent is the one forked ahead
    after the first one's start; it ends with the second container, and the one forked after
    it, never used, ends when the engine closes, leaving neither the holder nor any agent."""
    from pytest_isobox.native.rootless import holder

    runtime = NativeEngine().home / "runtime" / "rootless"
    found: dict = {}
    with NativeEngine() as engine:
        engine.import_rootfs(str(Path.home() / "rootfs"), "bb:latest")
        spec = ContainerSpec(image="bb", command=["sleep", "600"], network_mode="bridge")
        first = engine.run(spec)
        found["after_first"] = _agents(engine)  # the first one's agent, and the spare
        second = engine.run(spec)
        found["after_second"] = _agents(engine)
        found["ips"] = second.ips
        found["links"] = engine.exec(second.id, ["cat", "/proc/net/dev"]).output.decode()
        engine.remove(first.id, force=True)
        found["after_first_removed"] = _one_gone(found["after_first"])
        engine.remove(second.id, force=True)
        found["spare_alive"] = [not process_gone(pid, timeout=0)
                                for pid in found["after_second"] - found["after_first"]]
        found["holder"] = holder.read_info(runtime).pid
        maker = engine._agent_maker.pid  # what forked them
    found["gone"] = [process_gone(pid) for pid in [*found["after_second"], maker]]
    found["left"] = sorted(_agents(engine))
    return found


def test_the_next_agent_is_forked_ahead_and_ends_with_its_container_or_its_engine(
        user: ThrowawayUser) -> None:
    found = run_as(user, _agents_forked_ahead)
    assert len(found["after_first"]) == 2, found  # the first container's agent and a spare
    assert len(found["after_second"]) == 3, found  # the spare was used: a new spare
    assert found["ips"] and "eth0" in found["links"]
    assert len(found["after_first_removed"]) == 1, found  # the spare, the second's agent
    assert found["spare_alive"] == [True], found  # unused, it waits for its engine
    assert found["gone"] == [True, True, True, True] and found["left"] == []
    assert process_gone(found["holder"])


def _engine_dies_with_a_spare_agent() -> list[bool]:
    """An engine that dies (no close) with an agent forked ahead: the agent ends too, and so
    does the agent maker (and its running container's agent, with the container)."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            engine = NativeEngine()
            engine.import_rootfs(str(Path.home() / "rootfs"), "bb:latest")
            engine.run(ContainerSpec(image="bb", command=["sleep", "600"],
                                     network_mode="bridge"))
            pids = [*_agents(engine), engine._agent_maker.pid]  # and what forked them
            os.write(w, " ".join(map(str, pids)).encode())
        finally:
            os._exit(0)
    os.close(w)
    with open(r, "rb") as source:
        agents = [int(pid) for pid in source.read().split()]
    os.waitpid(child, 0)
    return [process_gone(pid) for pid in agents]


def test_an_agent_forked_ahead_ends_with_an_engine_that_died(user: ThrowawayUser) -> None:
    assert run_as(user, _engine_dies_with_a_spare_agent) == [True, True, True]


def _start_failing_before_ready() -> dict:
    """A network container whose shim's waiting process is killed before its start: the
    agent, told what to attach when the plan went out, may have claimed an address by then;
    the start fails, and no address, endpoint or agent of it is left (the agent undoes its
    claim before it ends, and the engine waits for that before releasing the container)."""
    from pytest_isobox.engine import ContainerError

    found: dict = {}
    with NativeEngine() as engine:
        engine.import_rootfs(str(Path.home() / "rootfs"), "bb:latest")
        spec = ContainerSpec(image="bb", command=["sleep", "600"], network_mode="bridge")
        engine.remove(engine.run(spec).id, force=True)  # the maker and a spare agent are there
        state = engine.create(spec)
        agent = engine._agent.pid  # forked ahead: the one this start uses
        shim = psutil.Process(engine._reserved[state.id].handle.pid)
        for waiting in shim.children():
            waiting.kill()
            assert process_gone(waiting.pid)  # (a zombie of its shim's for now)
        try:
            engine.start(state.id)
            found["error"] = ""
        except ContainerError as exc:
            found["error"] = str(exc)
        found["endpoints"] = [e["id"] for e in engine.network.store.endpoints()]
        found["members"] = engine.network.inspect("bridge").containers
        found["agent_gone"] = process_gone(agent)
    return found


def test_a_start_failing_before_its_network_is_wired_leaves_no_claim(
        user: ThrowawayUser) -> None:
    found = run_as(user, _start_failing_before_ready)
    assert found["error"].startswith("cannot start container"), found
    assert found["endpoints"] == [] and not found["members"], found
    assert found["agent_gone"], found


def _without_spares() -> dict:
    with NativeEngine(spares=False) as engine:  # (a CLI command's)
        engine.import_rootfs(str(Path.home() / "rootfs"), "bb:latest")
        state = engine.run(ContainerSpec(image="bb", command=["sleep", "600"],
                                         network_mode="bridge"))
        found = {"ips": state.ips, "next_agent": engine._agent}
        engine.remove(state.id, force=True)
    return found


def test_an_engine_without_spares_forks_no_agent_for_a_next_container(
        user: ThrowawayUser) -> None:
    found = run_as(user, _without_spares)
    assert found["ips"] and found["next_agent"] is None, found


def _removes_without_forking() -> dict:
    """A network container's remove once the engine has its agent maker: the maker (a
    process of the engine already in the user namespace) releases it, so the engine forks
    nothing (counted by a fork hook of this process); the release is whole all the same."""
    forks: list[int] = []
    os.register_at_fork(before=lambda: forks.append(1))  # (this child of the test only)
    found: dict = {}
    with NativeEngine() as engine:
        engine.import_rootfs(str(Path.home() / "rootfs"), "bb:latest")
        state = engine.run(ContainerSpec(image="bb", command=["true"], network_mode="bridge"))
        engine.wait(state.id)
        path = engine._find(state.id).path
        before = len(forks)
        engine.remove(state.id)
        found["forks"] = len(forks) - before
        found["dir_left"] = path.exists()
        found["endpoints"] = [e["id"] for e in engine.network.store.endpoints()]
        found["members"] = dict(engine.network.inspect("bridge").containers or {})
    return found


def test_a_remove_is_released_by_the_agent_maker_without_a_fork_of_the_engine(
        user: ThrowawayUser) -> None:
    found = run_as(user, _removes_without_forking)
    assert found == {"forks": 0, "dir_left": False, "endpoints": [], "members": {}}, found
