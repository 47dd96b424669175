"""The read-only verbs as a user types them load none of the engine's heavy modules (the native
reader answers from the files), and print byte for byte what the full engine prints. (A
custom --format loads the template engine, gotemplate.py, with its dataclasses: those are
compared, not weighed.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_engine_registry import READER_NEVER_LOADS

# What a read-only verb has no need of: what `ps` never loads (but datetime: image and
# inspect documents write and read RFC 3339 times with it), the image store, the network
# manager.
HEAVY = {*READER_NEVER_LOADS, "pytest_isobox.images.store",
         "pytest_isobox.native.network.manager"} - {"datetime"}
# ... nor what the plain form of any verb goes without (issue 14): the argument parser
# (argparse, its builder cli/arguments.py), importlib, contextlib, the reference grammar
# (images/reference.py: a regex compiled at import)
HEAVY |= {"pytest_isobox.cli.arguments", "importlib", "contextlib",
          "pytest_isobox.images.reference"}

# `isobox ARGS` in a fresh process; with "full", the registry has no reader to give, so the
# verb runs on NativeEngine(read_only=True) itself. Prints the modules it loaded on stderr.
RUN = """
import sys
at_start = set(sys.modules)  # (what this interpreter's site loads anyway: .pth files)
from pytest_isobox.engine import registry
if sys.argv[1] == "full":
    registry._READERS.clear()
from pytest_isobox.cli import main
code = main(sys.argv[2:])
sys.stdout.flush()
sys.stderr.write("\\nMODULES " + " ".join(sorted(set(sys.modules) - at_start)))
sys.exit(code)
"""


def _heavy(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if m in HEAVY or m.startswith("pytest_isobox.native.engine."))


def _run(how: str, *args: str) -> tuple[bytes, set[str]]:
    proc = subprocess.run([sys.executable, "-c", RUN, how, *args], capture_output=True,
                          timeout=60, check=False)
    err, _, modules = proc.stderr.decode().rpartition("\nMODULES ")
    assert proc.returncode == 0, (args, proc.returncode, err)
    return proc.stdout, set(modules.split())


@pytest.fixture
def a_home(native) -> dict[str, str]:
    """An image under two tags, a running container with a published port on the default
    network and on a network of its own, an exited one, a volume."""
    native("tag", native.image, "busybox-light")  # (:latest)
    net = native.name("network")
    native("network", "create", "--label", "k=v", net)
    vol = native.name("volume")
    native("volume", "create", vol)
    running = native.run_d("-p", "127.0.0.1::80", "-l", "a=b", "-v", f"{vol}:/data")
    native("network", "connect", net, running)
    exited = native.run_d(command=("sh", "-c", "echo out; echo err >&2"))
    native("wait", exited)
    native("inspect", exited)  # (its end folded into its state by the engine, once)
    return {"image": native.image, "running": running, "exited": exited, "network": net}


def test_read_verbs_are_light_and_print_what_the_engine_prints(a_home) -> None:
    running, exited, image = a_home["running"], a_home["exited"], a_home["image"]
    ps_fields = "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Ports}}\t{{.Names}}\t{{.Labels}}"
    verbs = [
        ("ps", "--no-trunc", "--format", ps_fields), ("ps", "-a", "--format", ps_fields),
        ("images", "--format", "{{.Repository}} {{.Tag}} {{.ID}} {{.Size}} {{.CreatedAt}}"),
        ("images", "-q"),
        ("image", "ls", "--no-trunc", "--digests", "--format", "{{.ID}} {{.Digest}} {{.Tag}}"),
        ("inspect", running), ("inspect", exited), ("inspect", "-f", "{{.State.Pid}}", running),
        ("inspect", image), ("inspect", running, image),
        ("image", "inspect", image), ("image", "inspect", "busybox-light"),
        ("logs", exited), ("port", running),
        ("network", "ls"), ("network", "ls", "--no-trunc"), ("network", "ls", "-q"),
        ("volume", "ls"),
    ]
    for args in verbs:
        light, loaded = _run("light", *args)
        full, loaded_by_full = _run("full", *args)
        assert light == full, args
        assert "pytest_isobox.native.engine" in loaded_by_full  # (the engine's own answer)
        templated = any(a in ("--format", "-f") for a in args)
        assert templated or not _heavy(loaded), (args, _heavy(loaded))
    for args in (("ps",), ("ps", "-a"), ("images",), ("image", "ls")):  # (times in them)
        assert not _heavy(_run("light", *args)[1]), args
    # an image's document writes no time but Go's zero (LastTagTime): no datetime
    assert "datetime" not in _run("light", "image", "inspect", image)[1]
