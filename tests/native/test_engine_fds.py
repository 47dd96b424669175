"""An engine opened and closed many times in one process (a test suite's pytest) holds no more
descriptors after the fifth container than after the first: each leaked pidfd or lock file
once pushed the suite's fds past 1024, where select(2) fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, needs_root

pytestmark = needs_root

CYCLES = """
import json, os, sys
from pytest_isobox.engine import ContainerSpec
from pytest_isobox.engine.registry import open_engine
counts = []
for _ in range(5):
    engine = open_engine("native", home=sys.argv[1])
    state = engine.run(ContainerSpec(image=sys.argv[2], command=["sleep", "30"]))
    engine.exec(state.id, ["true"])
    engine.stop(state.id, timeout=0)
    engine.remove(state.id, force=True)
    engine.close()
    counts.append(len(os.listdir("/proc/self/fd")))
print(json.dumps(counts))
"""


@pytest.mark.parametrize("shim", ["1", "0"], ids=["shim", "python-monitor"])
def test_engine_cycles_leave_no_descriptor_behind(isobox_home, busybox_rootfs, shim) -> None:
    out = subprocess.run([sys.executable, "-c", CYCLES, str(isobox_home), str(busybox_rootfs)],
                         check=False, cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ISOBOX_SHIM": shim})
    assert out.returncode == 0, out.stderr[-2000:]
    counts = json.loads(out.stdout)
    assert counts[-1] <= counts[0], f"descriptors after each cycle: {counts}"
