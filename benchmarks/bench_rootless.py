"""Rootless start time next to rootful start time, in one run.

Usage (as root): python3 benchmarks/bench_rootless.py [--runs 50] [--network none|bridge]
Root times the native engine rootful; then a throwaway user (made here, with subordinate
ids, and removed at the end with everything it owns) times the same engine rootless on the
same busybox rootfs: median create+start+wait of `true`, and the engine's opening (rootless:
starting the home's namespace holder, its id maps through newuidmap, slirp4netns when
/dev/net/tun allows), then opening a second engine while the first is open (rootless: joining
the running holder). Figures are printed, never
asserted. The user's child is a fork of this process dropped to the user (this Python lives
under /root, which the user cannot enter).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_isobox.engine import ContainerSpec
from pytest_isobox.native.engine import NativeEngine
from tests.native.rootless_users import ThrowawayUser, run_as

ROOTFS_TOOL = ROOT / "fixtures" / "busybox-rootfs"


def measure(home: str, rootfs: str, runs: int, network: str) -> dict[str, float]:
    """Milliseconds: opening the engine, and the median create+start+wait of `true`."""
    t0 = time.perf_counter()
    engine = NativeEngine(home=home)
    opened = (time.perf_counter() - t0) * 1000
    with engine:
        t0 = time.perf_counter()
        NativeEngine(home=home).close()  # a second process would join the running holder
        again = (time.perf_counter() - t0) * 1000
        image = engine.import_rootfs(rootfs, "bench-busybox:latest")
        spec = ContainerSpec(image=image, command=["true"], network_mode=network)
        times = []
        for i in range(runs + 3):
            t1 = time.perf_counter()
            state = engine.create(spec)
            engine.start(state.id)
            code = engine.wait(state.id)
            elapsed = (time.perf_counter() - t1) * 1000
            engine.remove(state.id)
            if code != 0:
                raise SystemExit(f"`true` exited with {code}")
            if i >= 3:  # warm-up runs are not counted
                times.append(elapsed)
    return {"open": opened, "again": again, "run": statistics.median(times),
            "rootless": engine.rootless}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--network", default="none", choices=("none", "bridge"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the rootless half runs as a throwaway user made here")
    tool = ROOTFS_TOOL
    with tempfile.TemporaryDirectory(prefix="isobox-bench-rootful-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run([str(tool), str(rootfs)], check=True, capture_output=True)
        rootful = measure(str(Path(tmp) / "home"), str(rootfs), args.runs, args.network)
    user = ThrowawayUser.create(subids=True)
    try:
        rootfs = user.home / "rootfs"
        subprocess.run([str(tool), str(rootfs)], check=True, capture_output=True)
        subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(rootfs)], check=True)
        rootless = run_as(user, measure, str(user.home / "isobox"), str(rootfs), args.runs,
                          args.network)
    finally:
        user.remove()
    assert not rootful["rootless"] and rootless["rootless"]
    print(f"start of `true`, median of {args.runs} runs, network {args.network}:")
    for label, found in (("rootful  (root)", rootful), (f"rootless (uid {user.uid})", rootless)):
        print(f"  {label:<19} run {found['run']:7.2f} ms   engine open {found['open']:7.2f} ms"
              f" (another while open: {found['again']:6.2f} ms)")
    print(f"  rootless / rootful: {rootless['run'] / rootful['run']:.2f}x")


if __name__ == "__main__":
    main()
