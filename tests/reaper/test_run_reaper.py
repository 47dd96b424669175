"""The run reaper itself (pytest_isobox/reaper.py): forked lazily, once; gone without reaping when
its engine closes; reaping once its owner dies, even when the owner's whole process group is
killed; never holding the owner's pipes open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.conftest import REPO, needs_root

OWNER = """
import os, sys, time
from pathlib import Path
from pytest_isobox.reaper import RunReaper
from pytest_isobox.processes import ProcessIdentity

marker = Path(sys.argv[1])
def reap(owner):
    go = marker.with_name("go")  # made by the test once the owner's pipes reached EOF
    while not go.exists():
        time.sleep(0.01)
    marker.write_text(str(owner.pid))

reaper = RunReaper(ProcessIdentity.current(), reap)
assert reaper.pid is None  # nothing forked until the first resource
reaper.ensure()
first = reaper.pid
reaper.ensure()
assert reaper.pid == first  # once
print(first, flush=True)
if sys.argv[2] == "close":
    reaper.close()
    print("closed", flush=True)
else:
    time.sleep(300)
"""


def start_owner(marker: Path, mode: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(marker), mode], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    return proc, int(proc.stdout.readline())


def named(pid: int) -> str:
    """The process's name once the forked child has set it (it does so first thing)."""
    deadline = time.monotonic() + 10
    while (name := psutil.Process(pid).name()) != "isobox-reaper" \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    return name


def test_a_closed_engine_s_reaper_exits_without_reaping(tmp_path: Path) -> None:
    marker = tmp_path / "reaped"
    proc, reaper = start_owner(marker, "close")
    assert proc.stdout.readline() == "closed\n"  # close() waited for the reaper: it has exited
    assert not psutil.pid_exists(reaper) or psutil.Process(reaper).status() == "zombie"
    proc.wait(timeout=30)
    assert not marker.exists()


def test_the_reaper_reaps_when_its_owner_s_group_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "reaped"
    proc, reaper = start_owner(marker, "hang")
    try:
        assert named(reaper) == "isobox-reaper"
        assert os.getsid(reaper) != os.getsid(proc.pid)  # a session of its own
        os.killpg(proc.pid, signal.SIGKILL)  # the owner's whole group, as a CI timeout does
        proc.communicate(timeout=30)  # EOF while the reaper still waits: it holds none of them
        assert not marker.exists()
        (tmp_path / "go").touch()
        deadline = time.monotonic() + 10
        while not marker.exists():
            assert time.monotonic() < deadline, "the reaper did not reap"
            time.sleep(0.02)
        assert marker.read_text() == str(proc.pid)
        psutil.wait_procs([psutil.Process(reaper)], timeout=10)
        assert not psutil.pid_exists(reaper) or psutil.Process(reaper).status() == "zombie"
    finally:  # whatever failed: the owner and its reaper end
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        (tmp_path / "go").touch()


@needs_root
def test_an_engine_forks_its_reaper_at_its_first_container_only(isobox_home: Path,
                                                                busybox_rootfs: Path) -> None:
    from pytest_isobox.engine import ContainerSpec
    from pytest_isobox.native.engine import NativeEngine

    engine = NativeEngine(home=isobox_home)
    try:
        engine.containers(all=True)
        assert engine._reaper.pid is None  # `isobox ps` forks nothing
        engine.create(ContainerSpec(image=str(busybox_rootfs), command=["true"],
                                    network_mode="none"))
        reaper = engine._reaper.pid
        assert reaper is not None and named(reaper) == "isobox-reaper"
    finally:
        engine.close()
    assert not psutil.pid_exists(reaper)  # reaped by close()


OWNED_DIRS = """
import sys, tempfile, time
from pathlib import Path
from pytest_isobox.names import OWNED_TEMP_PREFIXES, owned_temp_prefix
from pytest_isobox.processes import ProcessIdentity
from pytest_isobox.reaper import RunReaper

me = ProcessIdentity.current()
reaper = RunReaper(me, lambda owner: None)  # an engine with nothing of its own to reap
reaper.ensure()
for prefix in OWNED_TEMP_PREFIXES:
    print(tempfile.mkdtemp(prefix=owned_temp_prefix(prefix, me.token("-"))), flush=True)
time.sleep(300)
"""


def test_the_reaper_removes_its_dead_owner_s_temp_dirs_whatever_the_engine() -> None:
    """A RUN step's heredoc dir and a rootfs the plugin was importing, in the system's temp
    dir, go with the reaper of a run killed meanwhile (the engine's callback reaps nothing)."""
    from pytest_isobox.names import OWNED_TEMP_PREFIXES

    proc = subprocess.Popen([sys.executable, "-c", OWNED_DIRS], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    dirs = [Path(proc.stdout.readline().strip()) for _ in OWNED_TEMP_PREFIXES]
    try:
        assert all(d.is_dir() for d in dirs)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while any(d.exists() for d in dirs) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [d for d in dirs if d.exists()] == []
    finally:
        for d in dirs:
            subprocess.run(["rm", "-rf", str(d)], check=False)
