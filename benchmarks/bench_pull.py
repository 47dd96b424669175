"""Pulling a five-layer image of about 100 MB from a registry on loopback: isobox next to
`docker pull` and `skopeo copy` (to a directory), in one run.

Usage: python3 benchmarks/bench_pull.py [--layer-mb 25] [--runs 1]

The script starts Debian's docker-registry on 127.0.0.1 (a free port, storage in a temp dir;
the tests' runner, tests/registry/servers.Registry),
builds the image in a private isobox store (busybox plus four layers of random bytes, so no
compression helps anyone), pushes it with isobox, then measures
  1. a pull with nothing present: isobox (in-process) vs `docker pull` vs `skopeo copy`,
     and isobox's pull plus unpacking the layers (docker pull unpacks, skopeo's dir does not);
  2. a re-pull with every blob present: the blob requests the registry served (from its
     access log) and the time, isobox in-process next to `docker pull`;
  3. four concurrent pulls: four `isobox pull` processes into one fresh home, four
     `docker pull`, four `skopeo copy` to four directories; wall-clock time, and how many
     times the registry served each of isobox's blobs (layers and config).
Figures and ratios are printed side by side, never asserted. Everything started is stopped
by PID and every directory removed at the end; the image is removed from the daemon.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ROOTFS_TOOL = ROOT / "fixtures" / "busybox-rootfs"
DATA_LAYERS = 4  # on the busybox layer: five layers


def build_image(store: object, work: Path, layer_mb: int) -> str:
    """busybox plus four layers of `layer_mb` MB of random bytes each (five layers in all);
    returns the image id."""
    rootfs = work / "rootfs"
    subprocess.run([str(ROOTFS_TOOL), str(rootfs)], check=True, capture_output=True)
    image = store.import_rootfs(rootfs, None)  # type: ignore[attr-defined]
    for index in range(DATA_LAYERS):
        upper = work / f"upper{index}"
        (upper / "data").mkdir(parents=True)
        with open(upper / "data" / f"blob{index}", "wb") as out:
            out.writelines(os.urandom(1 << 20) for _ in range(layer_mb))
        image = store.commit(image, upper, {"Cmd": ["ls", "-l", "/data"]},  # type: ignore
                             f"RUN head -c {layer_mb}m /dev/urandom > /data/blob{index}")
        shutil.rmtree(upper)
    return image


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(*argv: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()[-500:]}")


def concurrently(argvs: list[list[str]], env: dict[str, str]) -> float:
    started = time.perf_counter()
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for argv in argvs]
    for proc, argv in zip(procs, argvs):
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {err.decode(errors='replace')[-500:]}")
    return time.perf_counter() - started


def docker_answers() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, check=False).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer-mb", type=int, default=25,
                        help="MB per random layer (default 25: four make about 100 MB)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each pull (median)")
    args = parser.parse_args()
    from pytest_isobox.images.store import ImageStore
    from tests.registry.servers import Registry, have_registry

    if not have_registry():
        raise SystemExit("docker-registry is not installed (apt-get install docker-registry)")
    os.environ.pop("ISOBOX_OFFLINE", None)

    work = Path(tempfile.mkdtemp(prefix="isobox-bench-pull-"))
    env = {**os.environ, "DOCKER_CONFIG": str(work / "docker-config")}  # no credentials
    os.environ["DOCKER_CONFIG"] = env["DOCKER_CONFIG"]
    registry = Registry(work / "registry")
    have_docker = docker_answers()
    have_skopeo = shutil.which("skopeo") is not None
    ref = ""
    try:
        registry.start()
        source = ImageStore(work / "source")
        image_id = build_image(source, work, args.layer_mb)
        repo = "bench/pull"
        ref = f"{registry.netloc}/{repo}:{image_id[7:19]}"
        source.tag(image_id, ref)
        source.push(ref)
        image = source.resolve(ref)
        size = sum(source.blobs.size(d) for d in image.diff_ids)
        print(f"image   {ref}: {len(image.diff_ids)} layers, {size / 1e6:.0f} MB")

        def docker_pull() -> None:
            run("docker", "pull", "-q", ref, env=env)

        def docker_clear() -> None:
            subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)

        skopeo = ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                  f"docker://{ref}"]
        results: dict[str, dict[str, float | None]] = {}

        # 1. nothing present
        cold: dict[str, list[float]] = {"isobox": [], "docker": [], "skopeo": []}
        unpacked: list[float] = []
        for attempt in range(args.runs):
            home = work / f"cold-{attempt}"
            pulled = ImageStore(home)
            cold["isobox"].append(timed(lambda pulled=pulled: pulled.pull(ref)))
            unpacked.append(cold["isobox"][-1] + timed(
                lambda pulled=pulled: pulled.layer_dirs(image_id)))
            if attempt < args.runs - 1:
                shutil.rmtree(home)
            if have_docker:
                docker_clear()
                cold["docker"].append(timed(docker_pull))
            if have_skopeo:
                target = work / f"skopeo-{attempt}"
                cold["skopeo"].append(timed(lambda t=target: run(*skopeo, f"dir:{t}")))
                shutil.rmtree(target)
        results["pull, nothing present"] = {k: statistics.median(v) if v else None
                                            for k, v in cold.items()}
        results["  + layers unpacked"] = {"isobox": statistics.median(unpacked),
                                          "docker": results["pull, nothing present"]["docker"],
                                          "skopeo": None}

        # 2. every blob present
        warm_home = work / f"cold-{args.runs - 1}"
        before = registry.blob_requests()
        store = ImageStore(warm_home)
        warm = [timed(lambda: store.pull(ref)) for _ in range(max(args.runs, 3))]
        isobox_blob_requests = registry.blob_requests() - before
        docker_warm = [timed(docker_pull) for _ in range(max(args.runs, 3))] if have_docker \
            else []
        results["re-pull, every blob present"] = {
            "isobox": statistics.median(warm),
            "docker": statistics.median(docker_warm) if docker_warm else None, "skopeo": None}

        # 3. four concurrent pulls
        shared = work / "shared-home"
        isobox_env = {**env, "ISOBOX_HOME": str(shared)}
        blobs = [*image.diff_ids, image.id]  # the layers and the config
        before_each = {d: registry.blob_gets(repo, d) for d in blobs}
        four = {"isobox": concurrently(
            [[sys.executable, "-m", "pytest_isobox.cli", "pull", "-q", ref]] * 4, isobox_env)}
        served = [registry.blob_gets(repo, d) - before_each[d] for d in blobs]
        if have_docker:
            docker_clear()
            four["docker"] = concurrently([["docker", "pull", "-q", ref]] * 4, env)
        if have_skopeo:
            four["skopeo"] = concurrently(
                [[*skopeo, f"dir:{work / f'four-{i}'}"] for i in range(4)], env)
        results["four concurrent pulls"] = {k: four.get(k) for k in ("isobox", "docker",
                                                                       "skopeo")}
        _print(results)
        print(f"re-pull: the registry served {isobox_blob_requests} blob requests to isobox "
              f"({len(warm)} re-pulls); in-process median {statistics.median(warm) * 1000:.1f} ms")
        print(f"four concurrent isobox pulls: each blob (layers, config) served {served} times "
              "(1 = once)")
        print("isobox keeps layers as tar blobs and unpacks them when a container first uses "
              "them; docker pull unpacks while pulling (the '+ layers unpacked' row), skopeo "
              "copy to dir: unpacks nothing")
        if not have_docker:
            print("docker: no daemon answers, no comparison")
        if not have_skopeo:
            print("skopeo: not installed, no comparison")
    finally:
        if ref and have_docker:
            subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


def _print(results: dict[str, dict[str, float | None]]) -> None:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:9.1f} ms"

    def ratio(theirs: float | None, ours: float | None) -> str:
        return "-" if theirs is None or not ours else f"{theirs / ours:6.2f}x"

    print(f"{'':30} {'isobox':>12} {'docker pull':>12} {'skopeo copy':>12} "
          f"{'docker/isobox':>14} {'skopeo/isobox':>14}")
    for name, row in results.items():
        print(f"{name:30} {cell(row['isobox']):>12} {cell(row['docker']):>12} "
              f"{cell(row['skopeo']):>12} {ratio(row['docker'], row['isobox']):>14} "
              f"{ratio(row['skopeo'], row['isobox']):>14}")


if __name__ == "__main__":
    main()
