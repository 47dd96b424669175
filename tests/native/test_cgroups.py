"""Container cgroups on the real kernel: limits, membership, OOM kills, the pids limit, CPU
quota, stats, killing forking trees and leaving nothing behind.

Every cgroup lives under a unique top-level `isobox-test-<owner pid>-<start time>-<random>`
prefix, so neither other runs, other teams' cgroups nor a runtime's sweep of `isobox/` ever
meet them; every cgroup and child process is removed by finalizers, and what a killed run left
is swept by the next one.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_isobox.engine import EngineUnavailable
from pytest_isobox.native.cgroups import (
    Limits,
    current_layout,
    list_cgroups,
    open_cgroup,
)
from pytest_isobox.native.cgroups.hierarchies import Layout
from pytest_isobox.native.cgroups.manager import HybridCgroup

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (writes cgroups)")

MiB = 1 << 20


def wait_for(condition: Callable[[], object], what: str, timeout: float = 15.0) -> object:
    """Poll `condition` with backoff until it is truthy; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return result


class Child:
    """A forked copy of this test process that runs `work` once released, then exits with its
    return value. It never returns into pytest."""

    def __init__(self, work: Callable[[], int | None]) -> None:
        go_read, go_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            status = 70
            try:
                os.close(go_write)
                os.read(go_read, 1)
                status = work() or 0
            except BaseException:  # noqa: BLE001 - a forked child must never return into pytest
                traceback.print_exc()
            finally:
                os._exit(status)
        os.close(go_read)
        self._go = go_write
        self.status: int | None = None

    def release(self) -> None:
        os.write(self._go, b"x")
        os.close(self._go)
        self._go = -1

    def poll(self) -> int | None:
        """The wait status once the child has exited (it is then reaped), else None."""
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        return self.status

    def wait(self, timeout: float = 30.0) -> int:
        wait_for(lambda: self.poll() is not None, f"child {self.pid} to exit", timeout)
        assert self.status is not None
        return self.status

    def reap(self) -> None:
        if self._go >= 0:
            os.close(self._go)
            self._go = -1
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.wait()


def read_message(fd: int, timeout: float = 15.0) -> str:
    """One newline-terminated message a child wrote to a pipe."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            pytest.fail(f"no message from the child within {timeout} s (got {data!r})")
        chunk = os.read(fd, 4096)
        if not chunk:
            pytest.fail(f"the child closed the pipe before a whole message (got {data!r})")
        data += chunk
    return data.decode().strip()


def hierarchy_roots(layout: Layout) -> set[Path]:
    roots = {h.mountpoint for h in layout.v1.values()}
    if layout.unified is not None:
        roots.add(layout.unified.mountpoint)
    return roots


TEST_PREFIX = "isobox-test-"


def start_time(pid: int) -> str | None:
    """A process's start time in clock ticks (/proc/<pid>/stat field 22): with the pid, it
    tells a live owner from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@pytest.fixture(scope="module", autouse=True)
def sweep_dead_runs() -> None:
    """Destroy the test cgroups of earlier runs killed (kill -9) before their finalizers ran;
    those of a live concurrent run carry its owner's pid and start time and are left alone."""
    for root in hierarchy_roots(current_layout()):
        for entry in root.glob(TEST_PREFIX + "*"):
            owner, start, *_ = entry.name.removeprefix(TEST_PREFIX).split("-") + ["", ""]
            if not owner.isdigit() or start_time(int(owner)) != start:
                open_cgroup(entry.name).destroy()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A cgroup prefix no one else uses; it must be gone from every hierarchy afterwards."""
    me = os.getpid()
    name = f"{TEST_PREFIX}{me}-{start_time(me)}-{uuid.uuid4().hex[:8]}"
    yield name
    leftovers = [root / name for root in hierarchy_roots(current_layout())
                 if (root / name).exists()]
    open_cgroup(name).destroy()
    assert not leftovers, f"cgroups left behind: {leftovers}"


@pytest.fixture
def new_cgroup(prefix: str) -> Iterator[Callable[..., HybridCgroup]]:
    """Make cgroups under the test's prefix; each is destroyed at the end, even on failure."""
    made: list[HybridCgroup] = []

    def make(limits: Limits | None = None, leaf: str = "c", layout: Layout | None = None):
        cgroup = open_cgroup(f"{prefix}/{leaf}", layout=layout)
        made.append(cgroup)
        cgroup.create(limits or Limits())
        return cgroup

    yield make
    for cgroup in reversed(made):
        cgroup.destroy()
        cgroup.prune_parents()


@pytest.fixture
def spawn() -> Iterator[Callable[[Callable[[], int | None]], Child]]:
    """Fork children; any still running at the end is killed and reaped."""
    children: list[Child] = []

    def start(work: Callable[[], int | None]) -> Child:
        child = Child(work)
        children.append(child)
        return child

    yield start
    for child in children:
        child.reap()


def start_in(cgroup: HybridCgroup, spawn, work: Callable[[], int | None]) -> Child:
    """A child that is in `cgroup` before it starts `work`."""
    child = spawn(work)
    cgroup.add(child.pid)
    child.release()
    return child


def busy_loop() -> None:
    while True:
        pass


def file_of(cgroup: HybridCgroup, controller: str, v1_file: str, v2_file: str) -> str:
    hierarchy = cgroup.layout.where(controller)
    assert hierarchy is not None, f"{controller} is not mounted here"
    file = v1_file if hierarchy.version == 1 else v2_file
    return (hierarchy.mountpoint / cgroup.name / file).read_text().strip()


# --------------------------------------------------------------------------- limits


def test_limits_are_written_and_read_back(new_cgroup):
    cgroup = new_cgroup(Limits(memory=96 * MiB, cpus=0.5, cpu_shares=512, pids=33))
    assert file_of(cgroup, "memory", "memory.limit_in_bytes", "memory.max") == str(96 * MiB)
    assert file_of(cgroup, "pids", "pids.max", "pids.max") == "33"
    cpu = cgroup.layout.where("cpu")
    if cpu.version == 1:
        assert file_of(cgroup, "cpu", "cpu.cfs_period_us", "") == "100000"
        assert file_of(cgroup, "cpu", "cpu.cfs_quota_us", "") == "50000"
        assert file_of(cgroup, "cpu", "cpu.shares", "") == "512"
    else:
        assert file_of(cgroup, "cpu", "", "cpu.max") == "50000 100000"
        assert file_of(cgroup, "cpu", "", "cpu.weight") == "59"
    memory = cgroup.layout.where("memory")
    swap_file = memory.mountpoint / cgroup.name / (
        "memory.memsw.limit_in_bytes" if memory.version == 1 else "memory.swap.max")
    if swap_file.exists():
        assert swap_file.read_text().strip() == (str(96 * MiB) if memory.version == 1 else "0")


def test_no_limits_leave_the_defaults(new_cgroup):
    cgroup = new_cgroup(Limits())
    assert file_of(cgroup, "pids", "pids.max", "pids.max") == "max"
    assert int(file_of(cgroup, "memory", "memory.limit_in_bytes", "memory.max")
               .replace("max", str(1 << 62))) > 1 << 40


def test_cpuset_of_new_cgroups_is_filled_from_the_parent(new_cgroup):
    cpuset = current_layout().where("cpuset")
    if cpuset is None or cpuset.version != 1:
        pytest.skip("cpuset is not a v1 controller here")
    cgroup = new_cgroup()
    root_cpus = (cpuset.mountpoint / "cpuset.cpus").read_text()
    for level in (cgroup.name, cgroup.name.rsplit("/", 1)[0]):
        assert (cpuset.mountpoint / level / "cpuset.cpus").read_text() == root_cpus
        assert (cpuset.mountpoint / level / "cpuset.mems").read_text().strip()


# --------------------------------------------------------------------------- membership


def test_added_child_is_in_the_cgroup_in_every_hierarchy(new_cgroup, spawn):
    cgroup = new_cgroup()
    child = start_in(cgroup, spawn, lambda: signal.pause())
    assert cgroup.procs() == [child.pid]
    memberships = Path(f"/proc/{child.pid}/cgroup").read_text().splitlines()
    for controller in ("memory", "cpu", "pids", "freezer"):
        hierarchy = cgroup.layout.where(controller)
        if hierarchy is None or hierarchy.version != 1:
            continue
        line = next(m for m in memberships if controller in m.split(":")[1].split(","))
        assert line.endswith(":/" + cgroup.name)
    assert cgroup.stats().pids == 1


def test_children_of_a_member_are_members(new_cgroup, spawn):
    cgroup = new_cgroup()
    ready_read, ready_write = os.pipe()

    def parent_of_two() -> None:
        for _ in range(2):
            if os.fork() == 0:
                signal.pause()
        os.write(ready_write, b"forked\n")
        signal.pause()

    child = start_in(cgroup, spawn, parent_of_two)
    assert read_message(ready_read) == "forked"
    procs = cgroup.procs()
    assert child.pid in procs and len(procs) == 3


# --------------------------------------------------------------------------- enforcement


def test_memory_hog_is_oom_killed_and_reported(new_cgroup, spawn):
    cgroup = new_cgroup(Limits(memory=48 * MiB))

    def hog() -> int:
        chunks = []
        for _ in range(128):  # 1 GiB in all, far past the limit
            chunks.append(b"\x01" * (8 * MiB))
        return 3  # reached only if nothing stopped it

    assert not cgroup.oom_killed()
    child = start_in(cgroup, spawn, hog)
    status = child.wait()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    assert cgroup.oom_killed()
    assert cgroup.stats().memory_peak <= 48 * MiB


def test_pids_limit_stops_forking_and_the_host_still_forks(new_cgroup, spawn):
    cgroup = new_cgroup(Limits(pids=5))
    report_read, report_write = os.pipe()

    def fork_until_refused() -> None:
        forked = 0
        try:
            for _ in range(50):
                if os.fork() == 0:
                    signal.pause()
                forked += 1
            os.write(report_write, b"unlimited\n")
        except OSError as exc:
            os.write(report_write, f"{forked} {errno.errorcode[exc.errno]}\n".encode())
        signal.pause()

    start_in(cgroup, spawn, fork_until_refused)
    assert read_message(report_read) == "4 EAGAIN"  # 5 tasks: the child and 4 of its own
    assert cgroup.stats().pids == 5
    outside = spawn(lambda: 0)
    outside.release()
    assert os.WEXITSTATUS(outside.wait()) == 0


def test_cpu_quota_holds_a_busy_loop_near_half_a_core(new_cgroup, spawn):
    cgroup = new_cgroup(Limits(cpus=0.5))
    start_in(cgroup, spawn, busy_loop)
    wait_for(lambda: cgroup.stats().cpu_time_ns > 200_000_000, "the busy loop to run 0.2 s")
    cpu_before, wall_before = cgroup.stats().cpu_time_ns, time.monotonic()
    time.sleep(1.5)  # the measured window; its real length is what counts
    cpu_after, wall_after = cgroup.stats().cpu_time_ns, time.monotonic()
    cores = (cpu_after - cpu_before) / 1e9 / (wall_after - wall_before)
    assert 0.3 <= cores <= 0.7, f"busy loop used {cores:.2f} cores under cpus=0.5"


# --------------------------------------------------------------------------- stats


def test_stats_show_memory_cpu_and_tasks(new_cgroup, spawn):
    cgroup = new_cgroup()
    ready_read, ready_write = os.pipe()

    def use_memory_and_cpu() -> None:
        held = b"\x02" * (32 * MiB)
        deadline = time.process_time() + 0.2
        while time.process_time() < deadline:
            pass
        os.write(ready_write, b"ready\n")
        signal.pause()
        del held

    start_in(cgroup, spawn, use_memory_and_cpu)
    assert read_message(ready_read) == "ready"
    stats = cgroup.stats()
    assert stats.memory_current >= 32 * MiB
    assert stats.memory_peak >= stats.memory_current
    assert stats.cpu_time_ns >= 150_000_000
    assert stats.pids == 1


# --------------------------------------------------------------------------- teardown


def forking_tree() -> None:
    """Sleepers plus 'runners' that fork and let the parent exit, so the running pid keeps
    changing: killing a list of pids read once would miss them."""
    def sleeper() -> None:
        if os.fork() == 0:
            signal.pause()

    for _ in range(20):
        sleeper()
    for _ in range(4):
        if os.fork() == 0:
            while True:
                try:
                    if os.fork():
                        os._exit(0)
                except OSError:
                    pass
    while True:
        try:
            sleeper()
        except OSError:
            time.sleep(0.001)


@pytest.mark.parametrize("without", [(), ("freezer",)], ids=["freezer", "kill-loop"])
def test_kill_all_kills_a_forking_tree(new_cgroup, spawn, without):
    layout = current_layout().without(*without)
    if without:  # no freezer and no unified hierarchy: only repeated SIGKILL is left
        layout = Layout(layout.v1, None)
    cgroup = new_cgroup(Limits(pids=200), layout=layout)
    child = start_in(cgroup, spawn, forking_tree)
    wait_for(lambda: len(cgroup.procs()) >= 25, "the tree to grow to 25 tasks")
    cgroup.kill_all()
    assert cgroup.procs() == []
    status = child.wait()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert cgroup.exists()  # kill_all empties, destroy removes


def test_destroy_leaves_nothing_in_any_hierarchy(new_cgroup, spawn, prefix):
    cgroup = new_cgroup(Limits(memory=64 * MiB, cpus=1, pids=10))
    child = start_in(cgroup, spawn, lambda: signal.pause())
    dirs = [root / cgroup.name for root in hierarchy_roots(cgroup.layout)
            if (root / cgroup.name).is_dir()]
    assert len(dirs) >= 4
    cgroup.destroy()
    assert os.WTERMSIG(child.wait()) == signal.SIGKILL
    assert [d for d in dirs if d.exists()] == []
    assert not cgroup.exists()
    cgroup.destroy()  # again: no error
    # the shared parent stays for the next container until pruned while idle
    assert all(d.parent.exists() for d in dirs)
    cgroup.prune_parents()
    assert [d.parent for d in dirs if d.parent.exists()] == []


def test_list_cgroups_names_the_children_of_a_prefix(new_cgroup, prefix):
    assert list_cgroups(prefix) == []
    new_cgroup(leaf="one")
    new_cgroup(leaf="two")
    assert list_cgroups(prefix) == [f"{prefix}/one", f"{prefix}/two"]
    new_cgroup(leaf="two/nested")
    assert list_cgroups(f"{prefix}/two") == [f"{prefix}/two/nested"]


def test_destroying_a_parent_destroys_its_children_and_their_processes(new_cgroup, spawn,
                                                                      prefix):
    parent = new_cgroup(leaf="parent")
    inner = new_cgroup(Limits(pids=10), leaf="parent/inner")
    child = start_in(inner, spawn, lambda: signal.pause())
    parent.destroy()
    assert os.WTERMSIG(child.wait()) == signal.SIGKILL
    assert not inner.exists() and not parent.exists()
    assert list_cgroups(prefix) == []


def test_destroy_of_one_cgroup_keeps_its_siblings(new_cgroup, prefix):
    one, two = new_cgroup(leaf="one"), new_cgroup(leaf="two")
    one.destroy()
    assert two.exists() and list_cgroups(prefix) == [f"{prefix}/two"]


# --------------------------------------------------------------------------- v2 paths


def test_unified_hierarchy_freezes_counts_and_kills(new_cgroup, spawn):
    """Exercise the v2 code on the real unified hierarchy by hiding v1's freezer and cpuacct
    (on a pure v2 machine this is the normal path)."""
    layout = current_layout()
    if layout.unified is None:
        pytest.skip("no cgroup v2 hierarchy is mounted")
    cgroup = new_cgroup(layout=layout.without("freezer", "cpuacct"))
    assert cgroup.v2 is not None
    child = start_in(cgroup, spawn, busy_loop)
    wait_for(lambda: cgroup.stats().cpu_time_ns > 50_000_000, "cpu.stat to count the loop")
    assert cgroup.v2.freeze()
    frozen_at = cgroup.stats().cpu_time_ns
    wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_text().split()[2] in "SD",
             "the frozen child to sleep")
    assert cgroup.stats().cpu_time_ns - frozen_at < 20_000_000
    cgroup.v2.thaw()
    cgroup.kill_all()
    assert os.WTERMSIG(child.wait()) == signal.SIGKILL
    assert cgroup.procs() == []


def test_v1_freezer_stops_the_tasks(new_cgroup, spawn):
    layout = current_layout()
    freezer = layout.where("freezer")
    if freezer is None or freezer.version != 1:
        pytest.skip("the freezer is not a v1 controller here")
    cgroup = new_cgroup()
    child = start_in(cgroup, spawn, busy_loop)
    wait_for(lambda: cgroup.stats().cpu_time_ns > 50_000_000, "the loop to run")
    assert cgroup.v1.freeze()
    assert (freezer.mountpoint / cgroup.name / "freezer.state").read_text().strip() == "FROZEN"
    frozen_at = cgroup.stats().cpu_time_ns
    wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_text().split()[2] in "SD",
             "the frozen child to sleep")
    assert cgroup.stats().cpu_time_ns - frozen_at < 20_000_000
    cgroup.v1.thaw()


def test_destroy_of_a_cgroup_joined_in_part_kills_its_task(new_cgroup, spawn):
    """A task that joined some hierarchies only (a shim moving itself in, one hierarchy at a
    time, while its failed start is undone): destroy removes the empty freezer leaf first,
    then must kill the task without that freezer, and leave nothing (it raised ENOENT)."""
    layout = current_layout()
    freezer, memory = layout.where("freezer"), layout.where("memory")
    if freezer is None or freezer.version != 1 or memory is None or memory.version != 1:
        pytest.skip("needs v1 freezer and memory hierarchies")
    cgroup = new_cgroup()
    child = spawn(lambda: signal.pause())
    (memory.mountpoint / cgroup.name / "cgroup.procs").write_text(str(child.pid))
    child.release()
    cgroup.destroy()
    assert os.WTERMSIG(child.wait()) == signal.SIGKILL
    assert not cgroup.exists()


def test_concurrent_creates_and_destroys_under_one_parent_never_fail(spawn, prefix):
    """Each round prunes the shared parent when it is empty, while other processes are
    creating beside it: creates must retry, never fail or leave a half-made cgroup."""

    def churn(worker: int) -> int:
        for round_ in range(25):
            cgroup = open_cgroup(f"{prefix}/w{worker}-{round_}")
            cgroup.create(Limits(memory=64 * MiB, pids=10))
            cgroup.destroy()
            cgroup.prune_parents()
        return 0

    workers = [spawn(lambda w=w: churn(w)) for w in range(4)]
    for worker in workers:
        worker.release()
    statuses = [worker.wait(timeout=60) for worker in workers]
    assert [os.waitstatus_to_exitcode(s) for s in statuses] == [0, 0, 0, 0]
    assert list_cgroups(prefix) == []


def test_creating_without_permission_is_a_clear_engine_unavailable(spawn, prefix):
    report_read, report_write = os.pipe()

    def create_as_nobody() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        try:
            open_cgroup(f"{prefix}/c").create(Limits(memory=64 * MiB))
            os.write(report_write, b"created\n")
        except EngineUnavailable as exc:
            os.write(report_write, f"{exc}\n".encode())

    spawn(create_as_nobody).release()
    message = read_message(report_read)
    assert message.startswith("no permission to create cgroup /sys/fs/cgroup/"), message
    assert list_cgroups(prefix) == []


def test_a_process_can_add_itself(new_cgroup, spawn):
    cgroup = new_cgroup()
    report_read, report_write = os.pipe()

    def join_then_report() -> None:
        cgroup.add(0)
        os.write(report_write, b"joined\n")
        signal.pause()

    child = spawn(join_then_report)
    child.release()
    assert read_message(report_read) == "joined"
    assert cgroup.procs() == [child.pid]
