"""Process identity, the one way isobox tells a live owner from a dead one or a reused pid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pytest_isobox.processes import ProcessIdentity


def test_current_is_alive_and_round_trips() -> None:
    me = ProcessIdentity.current()
    assert me.alive()
    assert ProcessIdentity.parse(me.token()) == me
    assert ProcessIdentity.parse(me.token("-"), "-") == me
    assert ProcessIdentity.load(me.dump()) == me
    assert ProcessIdentity(me.pid, me.start - 1).alive() is False  # a reused pid


def test_start_is_clock_ticks_since_boot_as_proc_says() -> None:
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        raw = f.read()
    ticks = int(raw[raw.rindex(b")") + 2:].split()[19])
    assert ProcessIdentity.current().start == ticks


def test_a_gone_process_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE)
    identity = ProcessIdentity.of(child.pid)
    assert identity is not None and identity.alive()
    child.communicate(b"\n")
    assert ProcessIdentity.of(child.pid) is None
    assert not identity.alive()


def test_a_zombie_counts_as_dead() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        # the child has exited but is not reaped: wait until /proc shows it as a zombie
        while Path(f"/proc/{pid}/stat").read_bytes().split(b") ")[1][:1] != b"Z":
            os.sched_yield()
        assert ProcessIdentity.of(pid) is None
    finally:
        os.waitpid(pid, 0)


def test_malformed_tokens_name_nobody() -> None:
    for token in ("", "12", "x:1", "1:y", "1-2"):
        assert ProcessIdentity.parse(token) is None
