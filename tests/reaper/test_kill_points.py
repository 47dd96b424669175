"""Issue 12: nothing outlives a killed run, at any moment, with no next run needed.

pytest (a small project using the plugin with the native engine), `isobox run --rm` and
`isobox build` are killed with SIGKILL at seeded random moments: during the build, the
network's setup, the container's start, its readiness wait, the test body and the teardown.
Without opening an engine on the home (its sweep would hide a failure), the leak check must
then report nothing of the killed run within 10 s, while a run of the same home that was not
killed goes on untouched and ends well.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import needs_root
from tests.reaper.conftest import (
    BASE_TAG,
    CLEANUP_LIMIT,
    SEED,
    RunThings,
    inner_pytest_argv,
    isobox_argv,
    kill_and_measure,
    start,
    wait_for,
)

pytestmark = needs_root

ROUNDS = int(os.environ.get("ISOBOX_REAPER_ROUNDS", "2"))  # per kill point; odd: Python monitor

CONFTEST = """
import os, pathlib
import pytest
from pytest_isobox import container, image, network, wait

MARKS = pathlib.Path(os.environ["REAPER_MARKS"])


def mark(name, text=""):
    (MARKS / name).write_text(text)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    mark("setup-" + fixturedef.argname)
    yield
    mark("done-" + fixturedef.argname)


built = image("ctx")
net = network()
box = container(image="{built}", command=["sh", "-c", "sleep 0.4; echo ready; exec sleep 300"],
                init=True, ports=["80/tcp"], networks=["{net}"], ready=wait.log("ready"))


@pytest.fixture(autouse=True)
def _teardown_mark():
    yield
    mark("teardown")
"""

TEST = """
import os, pathlib, time
from conftest import mark


def test_body(box):
    mark("body", box.id)
    stop = os.environ.get("REAPER_STOP")
    deadline = time.monotonic() + 900
    while stop and not pathlib.Path(stop).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(float(os.environ.get("REAPER_BODY", "0.3")))
"""

DOCKERFILE = f"""
FROM {BASE_TAG}
RUN echo {{nonce}} > /nonce && sleep 0.3
RUN sleep 0.3 && echo two > /two
COPY . /context
RUN <<EOF
#!/bin/sh
sleep 0.3
echo three > /three
EOF
"""

# kill point: (the mark that opens it, the range of the random delay after it, in seconds)
PYTEST_POINTS = {
    "build": ("setup-built", (0.0, 1.2)),
    "network": ("setup-net", (0.0, 0.02)),
    "start": ("setup-box", (0.0, 0.15)),
    "readiness": ("setup-box", (0.15, 0.6)),
    "body": ("body", (0.0, 0.3)),
    "teardown": ("teardown", (0.0, 0.3)),
}
PHASE_MARKS = ["setup-built", "done-built", "setup-net", "done-net", "setup-box", "done-box",
               "body", "teardown"]


def make_project(root: Path) -> Path:
    """The inner project, its build context made unique (the build cache must miss)."""
    root.mkdir()
    (root / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (root / "test_inner.py").write_text(textwrap.dedent(TEST))
    (root / "ctx").mkdir()
    (root / "ctx" / "Dockerfile").write_text(DOCKERFILE.format(nonce=secrets.token_hex(8)))
    (root / "marks").mkdir()
    return root


def run_env(home: Path, project: Path, monitor: str, **extra: str) -> dict[str, str]:
    return {"ISOBOX_HOME": str(home), "ISOBOX_OFFLINE": "1", "REAPER_MARKS": str(project / "marks"),
            "ISOBOX_SHIM": "1" if monitor == "shim" else "0", **extra}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Path:
    """The home every run here shares (as xdist workers do), the base image in it."""
    from pytest_isobox.native.engine import NativeEngine

    path = tmp_path_factory.mktemp("reaper") / "home"
    with NativeEngine(home=path) as engine:
        engine.import_rootfs(busybox_rootfs, BASE_TAG)
    return path


@pytest.fixture(scope="module")
def survivor(home: Path, tmp_path_factory: pytest.TempPathFactory):
    """A run of the same home that is never killed: its container must run on meanwhile."""
    project = make_project(tmp_path_factory.mktemp("survivor") / "project")
    stop = project / "stop"
    proc = start(inner_pytest_argv("test_inner.py"), project,
                 run_env(home, project, "shim", REAPER_STOP=str(stop), REAPER_BODY="0"))
    wait_for(lambda: (project / "marks" / "body").exists(), "the survivor's test body", proc,
             timeout=120)
    box = (project / "marks" / "body").read_text()
    yield box
    stop.touch()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert not (home / "containers" / box).exists()  # its own close removed it


def assert_running(home: Path, cid: str) -> None:
    """The survivor's container is untouched: its state says running, its process runs."""
    state = json.loads((home / "containers" / cid / "state.json").read_text())
    assert state["status"] == "running", state
    assert psutil.pid_exists(state["pid"]), state


@pytest.mark.parametrize("point", list(PYTEST_POINTS))
def test_pytest_killed(point, home, survivor, rng, tmp_path, request):
    mark, (low, high) = PYTEST_POINTS[point]
    for round_ in range(ROUNDS):
        monitor = "shim" if round_ % 2 == 0 else "python"
        project = make_project(tmp_path / f"project-{round_}")
        proc = start(inner_pytest_argv("test_inner.py"), project, run_env(home, project, monitor))
        things = RunThings(home)
        wait_for(lambda p=project: (p / "marks" / mark).exists(), f"mark {mark}", proc, timeout=120)
        delay = rng.uniform(low, high)
        if not _sleep_alive(proc, delay, things):
            continue
        reached = [m for m in PHASE_MARKS if (project / "marks" / m).exists()][-1:]
        kill_and_measure(proc, things, f"pytest/{point}+{delay:.3f}s/{monitor} "
                                       f"(last mark: {' '.join(reached)})", request)
        assert_running(home, survivor)


@pytest.mark.parametrize("rm", [["--rm"], []], ids=["rm", "kept-after-exit"])
@pytest.mark.parametrize("when", [(0.0, 0.2), (0.3, 0.8)], ids=["starting", "running"])
def test_isobox_run_killed(when, rm, home, survivor, rng, tmp_path, request):
    """A foreground run owns its container, --rm or not (without, it is kept only once it
    has exited): killed, it takes the container along."""
    for round_ in range(ROUNDS):
        monitor = "shim" if round_ % 2 == 0 else "python"
        before = set(_containers(home))
        proc = start(isobox_argv("run", *rm, "-p", "80", BASE_TAG, "sh", "-c",
                                 "echo up; exec sleep 300"), tmp_path,
                     {"ISOBOX_HOME": str(home), "ISOBOX_OFFLINE": "1",
                      "ISOBOX_SHIM": "1" if monitor == "shim" else "0"})
        things = RunThings(home)
        wait_for(lambda b=before: set(_containers(home)) - b, "the run's container", proc)
        delay = rng.uniform(*when)
        if not _sleep_alive(proc, delay, things):
            continue
        kill_and_measure(proc, things, f"isobox run/+{delay:.3f}s/{monitor}", request)
        assert_running(home, survivor)


BUILD_POINTS = {  # the moment that opens the kill point, the random delay after it
    "first-step": ("container", (0.0, 0.5)),
    "later": ("container", (0.5, 1.4)),
    "heredoc": ("heredoc", (0.0, 0.2)),  # while a RUN's heredoc scripts dir exists
}


@pytest.mark.parametrize("point", list(BUILD_POINTS))
def test_isobox_build_killed(point, home, survivor, rng, tmp_path, request):
    opens, when = BUILD_POINTS[point]
    for round_ in range(ROUNDS):
        monitor = "shim" if round_ % 2 == 0 else "python"
        context = tmp_path / f"ctx-{round_}"
        context.mkdir()
        (context / "Dockerfile").write_text(DOCKERFILE.format(nonce=secrets.token_hex(8)))
        before = set(_containers(home))
        proc = start(isobox_argv("build", "-t", f"isobox-test/reaper:b{round_}", str(context)),
                     tmp_path, {"ISOBOX_HOME": str(home), "ISOBOX_OFFLINE": "1",
                                "ISOBOX_SHIM": "1" if monitor == "shim" else "0"})
        things = RunThings(home)
        if opens == "heredoc":
            scripts = f"isobox-run-{proc.pid}-*"
            wait_for(lambda s=scripts: any(Path(tempfile.gettempdir()).glob(s)),
                     "the heredoc step", proc)
        else:
            wait_for(lambda b=before: set(_containers(home)) - b, "the build's first step", proc)
        delay = rng.uniform(*when)
        if not _sleep_alive(proc, delay, things):
            continue
        kill_and_measure(proc, things, f"isobox build/{point}+{delay:.3f}s/{monitor}", request)
        assert_running(home, survivor)


def _containers(home: Path) -> list[str]:
    try:
        return [n for n in os.listdir(home / "containers") if not n.startswith(".")]
    except FileNotFoundError:
        return []


def _sleep_alive(proc: subprocess.Popen, seconds: float, things: RunThings) -> bool:
    """Wait `seconds` (the drawn delay: the kill's moment); False when the run ended well
    first (no kill point then, but nothing of it may be left either)."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return True
    out = proc.stdout.read()
    assert proc.returncode == 0, out
    # a clean end may hand its network teardown to its reaper, which finishes just after the
    # command: nothing may be left once that is done, within the killed runs' deadline
    deadline = time.monotonic() + CLEANUP_LIMIT
    while (left := things.left()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert left == [], out
    print(f"seed {SEED}: the run ended before its kill point (+{seconds:.3f} s)")
    return False


XDIST_TEST = """
import os, pathlib, time
from conftest import mark


def test_body(box):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    mark("body-" + worker, f"{os.getpid()} {box.id}")
    stop = pathlib.Path(os.environ["REAPER_STOP"])
    deadline = time.monotonic() + 120
    while not stop.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
"""


def test_xdist_worker_killed(home, survivor, rng, tmp_path, request):
    """One xdist worker of a run sharing the home is killed in its test body: its things go
    (its reaper's sweep waits for nothing of the other worker's), the other worker's
    container runs on and its run ends by itself."""
    project = make_project(tmp_path / "project")
    (project / "test_inner.py").write_text(textwrap.dedent(XDIST_TEST))
    stop = project / "stop"
    proc = start(inner_pytest_argv("-n", "2", "--dist=each", "test_inner.py"), project,
                 run_env(home, project, "shim", REAPER_STOP=str(stop)))
    marks = project / "marks"
    try:
        wait_for(lambda: (marks / "body-gw0").exists() and (marks / "body-gw1").exists(),
                 "both workers' test bodies", proc, timeout=180)
        victim, other = rng.sample(["gw0", "gw1"], 2)
        pid, _ = (marks / f"body-{victim}").read_text().split()
        _, other_box = (marks / f"body-{other}").read_text().split()
        worker = psutil.Process(int(pid))
        assert worker.ppid() == proc.pid  # a worker of this very run (killed by its pid)
        delay = rng.uniform(0.0, 0.2)
        time.sleep(delay)  # the drawn kill moment, in the body's wait
        things = RunThings(home)
        kill_and_measure(_Pid(int(pid)), things, f"pytest -n 2/worker {victim}+{delay:.3f}s",
                         request)
        assert_running(home, other_box)
        assert_running(home, survivor)
    finally:
        stop.touch()
        proc.communicate(timeout=120)
    assert not (home / "containers" / other_box).exists()  # its worker's close removed it


class _Pid:
    """A process that is not our child (a worker of the inner run), by pid, for
    `kill_and_measure`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def wait(self) -> None:
        """Until it is gone or a zombie (its parent, the inner run, reaps it)."""
        deadline = time.monotonic() + 30
        with contextlib.suppress(psutil.NoSuchProcess):
            while psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE:
                assert time.monotonic() < deadline, f"pid {self.pid} outlived SIGKILL"
                time.sleep(0.01)
