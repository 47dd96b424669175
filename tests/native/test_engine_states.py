"""A container's state as the engine reports it, around the moment its monitor ends."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_isobox.engine import ContainerSpec, MountSpec
from pytest_isobox.polling import readable
from pytest_isobox.processes import ProcessIdentity
from tests.conftest import needs_root

pytestmark = needs_root


def test_a_state_read_just_before_the_exit_was_recorded_is_not_dead(engine, rootfs,
                                                                   tmp_path: Path) -> None:
    """The shim records the exit, then ends. A state read before the record, judged after
    the end, once showed `dead` with exit code 0 (a readiness wait then said so)."""
    (tmp_path / "gate").mkdir()
    st = engine.run(ContainerSpec(
        image=rootfs, network_mode="none",
        command=["sh", "-c", "until [ -e /gate/go ]; do sleep 0.01; done; exit 3"],
        mounts=[MountSpec("bind", "/gate", str(tmp_path / "gate"))]))
    cdir = engine._find(st.id)
    stale = engine._read_state(cdir)  # running: nothing recorded yet
    assert stale["status"] == "running"
    monitor = ProcessIdentity.load(stale["monitor"])
    fd = os.pidfd_open(monitor.pid)
    try:
        (tmp_path / "gate" / "go").touch()
        assert readable([fd], 30), "the container's monitor did not end"
    finally:
        os.close(fd)
    seen = engine._state_of(cdir, stale)
    assert (seen.status, seen.exit_code) == ("exited", 3)
    assert engine.wait(st.id, timeout=30) == 3
