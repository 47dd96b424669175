"""The shared-container registry's bookkeeping across processes (file lock, atomic file)."""

from __future__ import annotations

import json
import subprocess
import sys

from pytest_isobox.plugin.sharing import SharedRegistry, controller_token, token_alive


def test_token_tells_a_live_process_from_a_dead_one():
    assert token_alive(controller_token())
    proc = subprocess.run([sys.executable, "-c", ("from pytest_isobox.plugin.sharing import "
                           "controller_token; print(controller_token())")],
                          capture_output=True, text=True, check=True)
    assert not token_alive(proc.stdout.strip())


def test_first_worker_starts_the_others_attach(tmp_path):
    gw0 = SharedRegistry(tmp_path, "run1", "gw0", 2, controller_token())
    gw1 = SharedRegistry(tmp_path, "run1", "gw1", 2, controller_token())
    started = []
    assert gw0.acquire("container:db", lambda: started.append(1) or "id-1") == ("id-1", True)
    assert gw1.acquire("container:db", lambda: started.append(2) or "id-2") == ("id-1", False)
    assert started == [1]
    doc = json.loads(gw0.path.read_text())
    assert doc["containers"]["container:db"]["users"] == ["gw0", "gw1"]
    assert not list(gw0.path.parent.glob("*.tmp"))


def test_a_failed_start_records_nothing(tmp_path):
    reg = SharedRegistry(tmp_path, "run2", "gw0", 2, controller_token())

    def fail() -> str:
        raise RuntimeError("image missing")

    try:
        reg.acquire("container:db", fail)
    except RuntimeError:
        pass
    assert not reg.path.exists()
