"""Each CLI verb as a user types it (a fresh process per command), isobox beside docker.

Usage: python3 benchmarks/bench_cli.py [--runs 15] [--docker /usr/bin/docker] [--only ps,images]

isobox is the console script next to this interpreter (a venv's `isobox`), run on a home of
its own; docker is the given client against the local daemon, when one answers. Both get the
same busybox rootfs (`isobox import`, `docker import`), one long-running container each for
inspect/logs/port, and one cached Dockerfile. The figure is the median wall time of `--runs`
fresh processes (bytecode cached: one warm-up run first); the floor is this interpreter
starting and doing nothing. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOTFS_TOOL = ROOT / "fixtures" / "busybox-rootfs"
# names of this run's own: several benchmarks may share the docker daemon, and one's
# cleanup (rmi, rm -f) must not take another's image or sleeper away mid-run
IMAGE = f"bench-cli-busybox-{os.getpid()}:latest"
NAME = f"bench-cli-sleeper-{os.getpid()}"
BUILT = f"bench-cli-built-{os.getpid()}"


def median_ms(argv: list[str], runs: int, env: dict[str, str]) -> float:
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append((time.perf_counter() - t0) * 1000)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): "
                             f"{done.stderr.decode().strip()[-300:]}")
    return statistics.median(times)


def run_then_rm(cli: list[str]) -> list[str]:
    """`run -d` then `rm -f` of what it printed, as one timed shell command."""
    quoted = " ".join(cli)
    return ["sh", "-c", f"{quoted} rm -f $({quoted} run -d {IMAGE} sleep 60) >/dev/null"]


def verbs(cli: list[str], context: Path) -> dict[str, list[str]]:
    return {
        "ps": [*cli, "ps"],
        "ps -a": [*cli, "ps", "-a"],
        "images": [*cli, "images"],
        "inspect": [*cli, "inspect", NAME],
        "logs": [*cli, "logs", NAME],
        "port": [*cli, "port", NAME],
        "network ls": [*cli, "network", "ls"],
        "volume ls": [*cli, "volume", "ls"],
        "image inspect": [*cli, "image", "inspect", IMAGE],
        "run --rm IMAGE true": [*cli, "run", "--rm", IMAGE, "true"],
        "run -d; rm -f": run_then_rm(cli),
        "build -q (cached)": [*cli, "build", "-q", "-t", BUILT, str(context)],
    }


def prepare(cli: list[str], env: dict[str, str], rootfs: Path, context: Path) -> None:
    tar = rootfs.with_suffix(".tar")
    if not tar.exists():
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    subprocess.run([*cli, "import", str(tar), IMAGE], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "rm", "-f", NAME], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    subprocess.run([*cli, "run", "-d", "--name", NAME, "-p", "127.0.0.1::80", IMAGE,
                    "sleep", "3600"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "build", "-q", "-t", BUILT, str(context)], env=env,
                   check=True, stdout=subprocess.DEVNULL)


def cleanup(cli: list[str], env: dict[str, str]) -> None:
    for argv in ([*cli, "rm", "-f", NAME], [*cli, "rmi", BUILT],
                 [*cli, "rmi", IMAGE]):
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def docker_answers(docker: str) -> bool:
    return subprocess.run([docker, "version"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--docker", default=shutil.which("docker") or "docker")
    ap.add_argument("--only", help="comma-separated verbs to time (default: all)")
    opts = ap.parse_args()
    isobox = Path(sys.executable).with_name("isobox")
    if not isobox.exists():
        raise SystemExit(f"no isobox console script next to {sys.executable}")
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        tmp_path = Path(tmp)
        rootfs = tmp_path / "rootfs"
        subprocess.run([str(ROOTFS_TOOL), str(rootfs)], check=True, capture_output=True)
        context = tmp_path / "context"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN echo built > /built\n"
                                            "ENV BENCH=1\n")
        # as a user's install has it: bytecode compiled once and written (an environment
        # with PYTHONDONTWRITEBYTECODE would compile every changed module in every process)
        compileall.compile_dir(str(ROOT / "pytest_isobox"), quiet=1)
        iso_env = {**os.environ, "ISOBOX_HOME": str(tmp_path / "home"), "ISOBOX_OFFLINE": "1"}
        iso_env.pop("PYTHONDONTWRITEBYTECODE", None)
        iso = [str(isobox)]
        with_docker = docker_answers(opts.docker)
        docker = [opts.docker]
        try:
            prepare(iso, iso_env, rootfs, context)
            if with_docker:
                prepare(docker, dict(os.environ), rootfs, context)
            floor = median_ms([sys.executable, "-c", "pass"], opts.runs, iso_env)
            print(f"# {opts.runs} fresh processes per figure, median ms; floor: "
                  f"`{Path(sys.executable).name} -c pass` = {floor:.1f} ms")
            print(f"{'command':22} {'isobox':>9} {'docker':>9} {'docker/isobox':>14}")
            wanted = set(opts.only.split(",")) if opts.only else None
            iso_verbs, docker_verbs = verbs(iso, context), verbs(docker, context)
            for label, argv in iso_verbs.items():
                if wanted and label not in wanted:
                    continue
                ours = median_ms(argv, opts.runs, iso_env)
                if with_docker:
                    theirs = median_ms(docker_verbs[label], opts.runs, dict(os.environ))
                    print(f"{label:22} {ours:9.1f} {theirs:9.1f} {theirs / ours:13.2f}x")
                else:
                    print(f"{label:22} {ours:9.1f} {'-':>9} {'-':>14}")
        finally:
            cleanup(iso, iso_env)
            if with_docker:
                cleanup(docker, dict(os.environ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
