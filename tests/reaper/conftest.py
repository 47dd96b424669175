"""Kill a run with SIGKILL at a seeded random moment, then wait (at most 3 s) until nothing of
it is left on the host, and say how long that took.

What belongs to a killed run is known by name, never guessed: its home's path (mounts, state),
the ids of its containers and networks (cgroups, veths, bridges, nft and iptables rules name
them), and the pids of its processes (the run's descendants, read just before the kill: the
monitors, the reaper, the containers). Other runs on this host are left out that way.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from pytest_isobox import hostcheck
from tests.conftest import REPO

SEED = int(os.environ.get("ISOBOX_REAPER_SEED") or random.SystemRandom().randrange(1 << 32))
CLEANUP_LIMIT = 3.0  # s: nothing of a killed run is left after this (the deadline)
BASE_TAG = "isobox-test/reaper:base"
RESULTS: list[tuple[str, str, float]] = []  # (test, kill point, cleanup seconds)


def pytest_report_header() -> str:
    return f"reaper kill points: seed {SEED} (ISOBOX_REAPER_SEED={SEED} repeats them)"


def pytest_terminal_summary(terminalreporter) -> None:
    if not RESULTS:
        return
    slowest = max(RESULTS, key=lambda r: r[2])
    terminalreporter.write_line(
        f"reaper: {len(RESULTS)} kill points (seed {SEED}); slowest cleanup "
        f"{slowest[2]:.2f} s ({slowest[0]}, {slowest[1]})")
    for test, point, seconds in RESULTS:
        terminalreporter.write_line(f"  {seconds:5.2f} s  {point}  ({test})")


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random source of this test's own, from the run's seed (printed in the header)."""
    return random.Random(f"{SEED}:{request.node.nodeid}")


@pytest.fixture
def reaper_home(tmp_path: Path, busybox_rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home shared by the killed runs and the one left alive, with the base image in it."""
    from pytest_isobox.native.engine import NativeEngine

    home = tmp_path / "home"
    monkeypatch.setenv("ISOBOX_HOME", str(home))
    with NativeEngine(home=home) as engine:
        engine.import_rootfs(busybox_rootfs, BASE_TAG)
    return home


@dataclass
class RunThings:
    """What one run owns, by name."""

    home: Path
    owner: int = 0  # the killed process's pid
    pids: set[int] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)  # containers' and networks' ids

    def note(self, root: psutil.Process) -> None:
        """Add the run's processes and the ids its home and cgroups name now."""
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        for process in family:
            self.pids.add(process.pid)
            try:
                cgroups = Path(f"/proc/{process.pid}/cgroup").read_text()
            except OSError:
                continue
            self.ids |= set(re.findall(r"/isobox/([0-9a-f]{64})", cgroups))
        owner = self.owner = root.pid  # what the home names as this run's: made by it
        containers = self.home / "containers"
        for entry in _listdir(containers):
            if entry.startswith(f".tmp-{owner}-"):
                self.ids |= set(re.findall(r"[0-9a-f]{64}", entry))
            elif _owner_pid(containers / entry / "config.json") == owner:
                self.ids.add(entry)
        for entry in _listdir(containers / ".trash"):
            if entry.startswith(f"{owner}-"):
                self.ids |= set(re.findall(r"[0-9a-f]{64}", entry))
        for path in (self.home / "networks" / "by-name").glob("*.json"):
            if _owner_pid(path) == owner:
                self.ids.add(json.loads(path.read_text())["id"])

    def left(self) -> list[str]:
        """What `isobox system check` reports now that is this run's."""
        lines = hostcheck.current_state([self.home])
        tokens = [str(self.home)] + [i[:11] for i in self.ids]  # veths: ibv + 11 of the id
        tokens += [f"isobox-{i[:8]}" for i in self.ids]  # bridges
        mine = []
        for line in lines:
            pid = re.match(r"process \S+ pid (\d+)", line)
            if (pid and int(pid.group(1)) in self.pids) or any(t in line for t in tokens):
                mine.append(line)
        scripts = Path(tempfile.gettempdir()).glob(f"isobox-run-{self.owner}-*")  # heredocs
        return mine + [f"temp {path}" for path in scripts]


def _owner_pid(record: Path) -> int | None:
    """The pid of the owner a JSON record (a container's config, a network) names."""
    try:
        return int((json.loads(record.read_text()).get("owner") or {})["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def kill_and_measure(proc: subprocess.Popen, things: RunThings, point: str,
                     request: pytest.FixtureRequest) -> float:
    """SIGKILL `proc` (by its pid, after noting what it owns), then poll the leak check until
    nothing of the run is left; the seconds that took. Fails after CLEANUP_LIMIT s."""
    root = psutil.Process(proc.pid)
    things.note(root)
    os.kill(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    proc.wait()
    things.note(root)  # (the home still names what the run had; its processes are gone)
    while True:
        left = things.left()
        elapsed = time.monotonic() - killed
        if not left:
            break
        if elapsed > CLEANUP_LIMIT:
            pytest.fail(f"seed {SEED}, kill point {point}: after {elapsed:.1f} s still left:\n"
                        + "\n".join(left))
        time.sleep(0.05)
    RESULTS.append((request.node.name, point, elapsed))
    print(f"seed {SEED}: killed at {point}; cleaned up in {elapsed:.2f} s")
    return elapsed


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Poll `condition` until true; fail naming `what` (with the run's output if it ended)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the run ended before {what} (status {proc.returncode}):\n{out}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout} s")
        time.sleep(0.01)


def start(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """A run of ours as a subprocess, its output in a pipe (read when it fails)."""
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def isobox_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest_isobox.cli", *args]


def inner_pytest_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]


def python_path() -> str:
    return os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
