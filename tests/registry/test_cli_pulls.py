"""The CLI and registries: `isobox create` pulls on demand, `--pull=missing|always|never` on
run, progress bars on a terminal and plain lines otherwise, and "no network" as one line
(from a network namespace with no interface up, so no packet can leave)."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.images.store import ImageStore
from tests import netns
from tests.conftest import needs_root
from tests.registry.servers import Registry

pytestmark = needs_root


def _isobox(*args: str, home: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "pytest_isobox.cli", *args],
                          env={**os.environ, "ISOBOX_HOME": str(home)},
                          capture_output=True, text=True, check=False)


@pytest.fixture
def pushed(store: ImageStore, two_layer_image: str, registry: Registry,
           request: pytest.FixtureRequest) -> str:
    """The two-layer image pushed to the session's registry under a repository of its own."""
    ref = f"{registry.netloc}/cli/{request.node.name.replace('_', '-')[:40]}:1"
    store.tag(two_layer_image, ref)
    store.push(ref)
    return ref


def _manifest_gets(registry: Registry, ref: str) -> int:
    path = ref.split("/", 1)[1].rpartition(":")[0]
    return registry.served("GET", f"/v2/{path}/manifests/1")


def test_create_pulls_on_demand_and_run_follows_the_pull_policy(
        pushed: str, registry: Registry, tmp_path: Path) -> None:
    home = tmp_path / "home"
    never = _isobox("run", "--rm", "--pull", "never", pushed, home=home)
    assert never.returncode == 125
    assert never.stderr.splitlines() == [
        f"isobox: No such image: {pushed} (pull policy never: not pulling it)"]
    assert _manifest_gets(registry, pushed) == 0
    created = _isobox("create", pushed, home=home)
    assert created.returncode == 0, created.stderr
    assert _manifest_gets(registry, pushed) == 1  # create pulled it
    assert _isobox("rm", created.stdout.strip(), home=home).returncode == 0
    ran = _isobox("run", "--rm", pushed, home=home)  # missing (the default): present, no pull
    assert (ran.returncode, ran.stdout) == (0, "hello from the registry\n"), ran.stderr
    assert _manifest_gets(registry, pushed) == 1
    ran = _isobox("run", "--rm", "--pull", "always", pushed, home=home)
    assert (ran.returncode, ran.stdout) == (0, "hello from the registry\n"), ran.stderr
    assert _manifest_gets(registry, pushed) == 2  # always: asked the registry again
    ran = _isobox("run", "--rm", "--pull", "never", pushed, home=home)
    assert (ran.returncode, ran.stdout) == (0, "hello from the registry\n"), ran.stderr
    assert _manifest_gets(registry, pushed) == 2


def _rows(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("Status:")]


def test_progress_bars_on_a_terminal_plain_lines_otherwise(pushed: str, store: ImageStore,
                                                           tmp_path: Path) -> None:
    image = store.resolve(pushed)
    shorts = [d[7:19] for d in image.diff_ids]
    plain = _isobox("pull", pushed, home=tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr
    assert "\x1b[" not in plain.stderr
    assert sorted(_rows(plain.stderr)) == sorted(f"{short}: Complete" for short in shorts)
    assert plain.stderr.splitlines()[-1] == f"Status: pulled {pushed} ({image.id})"
    again = _isobox("pull", pushed, home=tmp_path / "plain")
    assert sorted(_rows(again.stderr)) == sorted(f"{short}: Already exists" for short in shorts)

    code, out, screen = _on_a_terminal(["pull", pushed], tmp_path / "tty")
    assert (code, out) == (0, f"{pushed}\n")
    assert "\x1b[2K" in screen  # rows redrawn in place
    assert "Downloading [" in screen and "MB/" in screen  # a bar with its byte counts
    for short in shorts:
        assert f"{short}: Complete" in screen
    # a pull on demand (run) draws the same bars when stderr is a terminal
    code, out, screen = _on_a_terminal(["run", "--rm", pushed], tmp_path / "tty-run")
    assert (code, out) == (0, "hello from the registry\n")
    assert "\x1b[2K" in screen and "Downloading [" in screen


def _on_a_terminal(args: list[str], home: Path) -> tuple[int, str, str]:
    """`isobox ARGS` with stderr on a pty: (exit code, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "pytest_isobox.cli", *args],
                                env={**os.environ, "ISOBOX_HOME": str(home)},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = -1
        screen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the command exited and closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        proc.stdout.close()
        return proc.wait(60), out, screen.decode(errors="replace")
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


@pytest.fixture
def no_network() -> Iterator[str]:
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2")
    name = netns.make_empty()
    try:
        yield name
    finally:
        netns.remove(name)


def test_no_network_is_one_line_naming_the_registry(no_network: str, docker_config: Path,
                                                    tmp_path: Path) -> None:
    """Docker Hub (DNS cannot work) and an address (no route): nothing leaves the namespace."""
    inside = ("ip", "netns", "exec", no_network)
    hub = _isobox("pull", "redis:7", home=tmp_path / "hub", prefix=inside)
    assert hub.returncode == 1
    assert len(hub.stderr.splitlines()) == 1, hub.stderr
    assert hub.stderr.startswith("isobox: cannot reach registry registry-1.docker.io: "
                                 "no such host or no network ("), hub.stderr
    far = _isobox("pull", "192.0.2.1:5000/app:1", home=tmp_path / "far", prefix=inside)
    assert far.returncode == 1
    assert far.stderr.splitlines() == [
        "isobox: cannot reach registry 192.0.2.1:5000: Network is unreachable"]
    run = _isobox("run", "--rm", "redis:7", home=tmp_path / "run", prefix=inside)
    assert run.returncode == 125
    assert len(run.stderr.splitlines()) == 1 and "no such host or no network" in run.stderr
    assert ImageStore(tmp_path / "hub").index.tags() == {}
