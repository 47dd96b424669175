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


def test_a_fork_drops_the_netfilter_socket_without_closing_what_took_its_number() -> None:
    """A monitor closes every fd it inherited and opens its own pipes; the process socket it
    inherited must then be forgotten, not closed: its number may be a pipe of the monitor's
    by now (a start once failed with EBADF so, in CI)."""
    from pytest_isobox.native.network.nfnetlink import SOCKET

    with SOCKET as sock:
        number = sock.fileno()
    del sock  # only the process socket holds it now
    pid = os.fork()
    if pid == 0:  # the child: close what it inherited, reuse the number, use the socket
        code = 1
        try:
            os.close(number)
            r, _w = os.pipe()
            os.dup2(r, number)
            with SOCKET as mine:
                code = 2 if mine.fileno() == number else 0
            os.fstat(number)  # still the pipe
        except OSError:
            code = 3
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
