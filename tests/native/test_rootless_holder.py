"""One user namespace per home, shared by every engine process of the user (the holder).

Two separate processes of one throwaway user put containers on one named network and
reach each other by name; the holder ends by itself once neither process nor container is
left; a holder killed with SIGKILL is replaced by the next engine.
"""

from __future__ import annotations

import os
import select
import signal

import psutil
import pytest

from pytest_isobox.engine import ContainerSpec, NetworkAttachment
from pytest_isobox.native.engine import NativeEngine
from pytest_isobox.native.rootless.idmap import current_mapping
from pytest_isobox.native.rootless.userns import UserNamespace
from tests.native.rootless_users import (
    ThrowawayUser,
    process_gone,
    run_as,
    runtime_dir,
    throwaway_user,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates throwaway users: needs root")


@pytest.fixture(scope="module")
def user() -> ThrowawayUser:
    with throwaway_user(subids=True, rootfs=True) as made:
        yield made


def _namespaces(engine: NativeEngine) -> tuple[int, int]:
    """The holder's pid and the user namespace's inode, as this engine sees them."""
    userns = engine._rootless.userns
    return userns.pid, os.fstat(userns.user_fd).st_ino


def _import_bb(rootfs: str) -> None:
    with NativeEngine() as engine:
        engine.import_rootfs(rootfs, "bb:latest")


def _serve(ready_w: int, done_r: int) -> None:
    """Process A: a server named `web` on the network `shared`, until told to stop."""
    with NativeEngine() as engine:
        engine.network_create("shared")
        engine.run(ContainerSpec(
            image="bb", name="web", networks=[NetworkAttachment("shared", ("www",))],
            command=["sh", "-c", "while true; do echo hi-from-a | nc -l -p 8080; done"]))
        pid, inode = _namespaces(engine)
        os.write(ready_w, f"{pid} {inode}\n".encode())
        os.read(done_r, 1)  # until the test says so (or dies)
        engine.remove("web", force=True)
        engine.network_remove("shared")


def _reach_web() -> dict:
    """Process B: a client container on `shared` asks `web` and `www` by name."""
    with NativeEngine() as engine:
        retry = ("for n in web www; do for i in $(seq 50); do r=$(nc -w 2 $n 8080 </dev/null);"
                 ' [ -n "$r" ] && echo "$n:$r" && break; sleep 0.1; done; done')
        state = engine.run(ContainerSpec(image="bb", command=["sh", "-c", retry],
                                         networks=[NetworkAttachment("shared")]))
        code = engine.wait(state.id)
        out = b"".join(data for _, data in engine.logs(state.id)).decode()
        engine.remove(state.id)
        pid, inode = _namespaces(engine)
    return {"code": code, "out": out, "holder": pid, "userns": inode}


def _live(user: ThrowawayUser) -> list[int]:
    """The user's processes that still run (a zombie waits only for init to reap it)."""
    return [p.pid for p in user.processes() if p.status() != psutil.STATUS_ZOMBIE]


def test_two_processes_share_a_network_and_the_holder_then_ends(user: ThrowawayUser) -> None:
    run_as(user, _import_bb, str(user.home / "rootfs"))
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    a = os.fork()
    if a == 0:  # the test's own child, which becomes process A
        try:
            os.close(ready_r)
            os.close(done_w)
            run_as(user, _serve, ready_w, done_r)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        assert select.select([ready_r], [], [], 60)[0], "process A did not start its server"
        holder_a, userns_a = (int(n) for n in os.read(ready_r, 100).split())
        found = run_as(user, _reach_web)
    finally:
        os.close(done_w)  # A removes its container and ends
        os.waitpid(a, 0)
        os.close(ready_r)
    assert (found["holder"], found["userns"]) == (holder_a, userns_a)  # one namespace
    assert found["code"] == 0
    assert {"web:hi-from-a", "www:hi-from-a"} <= set(found["out"].split())
    assert process_gone(holder_a)  # no engine and no container left: the holder ended
    assert _live(user) == []
    assert not (user.home / ".cache/isobox/runtime/rootless/userns.json").exists()


def _replace_killed_holder() -> dict:
    with UserNamespace(current_mapping(), runtime_dir()) as first:
        os.kill(first.pid, signal.SIGKILL)  # our own process, by its pid
        gone = process_gone(first.pid)
    with UserNamespace(current_mapping(), runtime_dir()) as second:
        uid_inside = second.run(os.getuid)
    return {"first": first.pid, "gone": gone, "second": second.pid, "uid": uid_inside,
            "second_gone": process_gone(second.pid)}


def test_a_killed_holder_is_replaced_by_the_next_user(user: ThrowawayUser) -> None:
    found = run_as(user, _replace_killed_holder)
    assert found["gone"] and found["second"] != found["first"]
    assert found["uid"] == 0
    assert found["second_gone"]
