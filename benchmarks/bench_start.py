"""Median time to create, start and wait for `true`: isobox's native engine next to `docker run`.

Usage: python3 benchmarks/bench_start.py [--runs 50] [--network none|bridge]
Both run the same busybox rootfs (imported into isobox's store and, when a Docker daemon
answers, into Docker with `docker import`). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from pytest_isobox.engine import ContainerSpec
from pytest_isobox.native.engine import NativeEngine

ROOT = Path(__file__).resolve().parent.parent
ROOTFS_TOOL = ROOT / "fixtures" / "busybox-rootfs"


def make_rootfs(dest: Path) -> Path:
    subprocess.run([str(ROOTFS_TOOL), str(dest)], check=True, capture_output=True)
    return dest


def bench_isobox(home: Path, rootfs: Path, runs: int, network: str) -> dict[str, float]:
    """Milliseconds: median create+start+wait, and median remove after it."""
    with NativeEngine(home=home) as engine:
        image = engine.import_rootfs(rootfs, "bench-busybox:latest")
        spec = ContainerSpec(image=image, command=["true"], network_mode=network)
        runs_ms, removes_ms = [], []
        cpu_before = None
        for i in range(runs + 3):
            if i == 3:
                cpu_before = _cpu_seconds()
            t0 = time.perf_counter()
            state = engine.create(spec)
            engine.start(state.id)
            code = engine.wait(state.id)
            t1 = time.perf_counter()
            engine.remove(state.id)
            t2 = time.perf_counter()
            if code != 0:
                raise SystemExit(f"isobox: `true` exited with {code}")
            if i >= 3:  # warm-up runs are not counted
                runs_ms.append((t1 - t0) * 1000)
                removes_ms.append((t2 - t1) * 1000)
    cpu_ms = (_cpu_seconds() - cpu_before) * 1000 / runs
    return {"run": statistics.median(runs_ms), "remove": statistics.median(removes_ms),
            "run+remove": statistics.median(a + b for a, b in zip(runs_ms, removes_ms)),
            "cpu": cpu_ms}


def _cpu_seconds() -> float:
    """CPU time of this process and of every process it has reaped (monitors, and through
    them the containers): what a container costs, whatever else loads the machine."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_fork_exec(runs: int) -> float:
    """Milliseconds: median fork + exec of /bin/true from this process, with no isolation at
    all: the floor any runtime starts from on this machine at this moment."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            try:
                os.execv("/bin/true", ["true"])
            finally:
                os._exit(127)
        os.waitpid(pid, 0)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], check=False, capture_output=True).returncode == 0


def bench_docker(rootfs: Path, runs: int, network: str) -> float:
    """Milliseconds: median `docker run --rm` of `true` (create, start, wait and remove)."""
    tag = "isobox-bench-busybox:latest"
    tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], check=True,
                         capture_output=True).stdout
    subprocess.run(["docker", "import", "-", tag], input=tar, check=True, capture_output=True)
    try:
        times = []
        for i in range(runs + 3):
            t0 = time.perf_counter()
            subprocess.run(["docker", "run", "--rm", "--network", network, tag, "true"],
                           check=True, capture_output=True)
            if i >= 3:
                times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--network", default="none", choices=["none", "bridge"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="isobox-bench-") as tmp:
        rootfs = make_rootfs(Path(tmp) / "rootfs")
        floor = bench_fork_exec(args.runs)
        print(f"floor   fork+exec `true` without isolation: median {floor:.1f} ms "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        ours = bench_isobox(Path(tmp) / "home", rootfs, args.runs, args.network)
        print(f"isobox  create+start+wait `true` ({args.network} network): "
              f"median {ours['run']:.1f} ms over {args.runs} runs "
              f"(remove afterwards {ours['remove']:.1f} ms; both {ours['run+remove']:.1f} ms; "
              f"CPU time per container, all processes, {ours['cpu']:.1f} ms)")
        if not docker_answers():
            print("docker  no daemon answers: no comparison")
            return
        theirs = bench_docker(rootfs, args.runs, args.network)
        print(f"docker  run --rm `true` ({args.network} network): median {theirs:.1f} ms "
              f"over {args.runs} runs")
        print(f"ratio   docker / isobox: {theirs / ours['run']:.1f}x (create+start+wait), "
              f"{theirs / ours['run+remove']:.1f}x (including removal, as --rm does)")


if __name__ == "__main__":
    main()
