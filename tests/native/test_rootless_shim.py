"""Rootless containers through isobox-shim: the shim enters the home's user namespace before
its pid namespace, and the container it starts is the one the Python runner starts (ids, id
maps, mounts, capabilities, limits), whether its shim was spawned for it or waited in the
pool. Each scenario runs in a child that is a throwaway user (see rootless_users)."""

from __future__ import annotations

import os
import re
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
