"""Flags of issue 15 checked on both engines, beside dockerd's outcome: exec --privileged,
ps -s, images --digests and REPO[:TAG], inspect finding networks and volumes, volume
inspect/ls, system df/info, top, stats --format, run/create flags (--read-only, --mount,
--label-file, -a, --sig-proxy, --pull)."""

from __future__ import annotations

import json

from tests.cli.conftest import Cli
from tests.conftest import needs_root

pytestmark = needs_root

CAP_SYS_ADMIN = 21


def _capeff(text: str) -> int:
    return int(text.split()[1], 16)


def test_exec_privileged(cli: Cli) -> None:
    name = cli.run_d("--cap-drop", "ALL")
    status = ("grep", "CapEff", "/proc/self/status")
    assert _capeff(cli.out("exec", name, *status)) == 0
    done = cli("exec", "--privileged", name, *status, check=False)
    if cli.engine == "docker" and done.returncode != 0:  # a dockerd that cannot grant all
        assert done.returncode == 126 and b"apply caps" in done.stdout  # (a sandbox's
        return                                               # bounding set): as docker's
    assert done.returncode == 0, done.stderr
    assert _capeff(done.stdout.decode()) & (1 << CAP_SYS_ADMIN)
    assert _capeff(cli.out("exec", name, *status)) == 0  # the next exec: the container's
