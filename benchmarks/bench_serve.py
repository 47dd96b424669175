"""`isobox serve` side by side with the system's dockerd, in one run:
  1. `docker run --rm IMAGE true` (the docker CLI) against each,
  2. a testcontainers session of 20 containers with a published port and a log wait,
  3. requests per second of `GET /containers/json` with 50 containers (docker-py's
     low-level client, one connection).

The busybox rootfs is imported into a private isobox home and into dockerd under a tag of
this run; everything made is removed at the end. Run as root:
    python benchmarks/bench_serve.py [--runs N] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTFS_TOOL = REPO / "fixtures" / "busybox-rootfs"
DOCKERD = "unix:///var/run/docker.sock"

_TESTCONTAINERS = """
import sys, time
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy
image, count = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
boxes = []
for _ in range(count):
    box = (DockerContainer(image).with_exposed_ports(8080)
           .with_command(["sh", "-c", "echo ready; exec sleep 300"])
           .waiting_for(LogMessageWaitStrategy("ready")))
    box.start()
    box.get_exposed_port(8080)
    boxes.append(box)
for box in boxes:
    box.stop()
print(time.perf_counter() - start)
"""


def _docker(host: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": "/nonexistent-isobox"}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True,
                          check=True, timeout=300)


def _dockerd_answers() -> bool:
    try:
        _docker(DOCKERD, "version", "--format", "{{.Server.Version}}")
    except (subprocess.CalledProcessError, FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return True


def _start_server(home: Path, sock: Path, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "pytest_isobox.server", "-H",
                             f"unix://{sock}", "--home", str(home), "--ip", "0.0.0.0"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    import select

    deadline = time.monotonic() + 60
    while b"API listening" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"isobox serve did not start: {log.read_text()}")
        select.select([], [], [], 0.05)
    return proc


def bench_run(host: str, image: str, runs: int) -> float:
    _docker(host, "run", "--rm", image, "true")  # warm
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        _docker(host, "run", "--rm", image, "true")
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_testcontainers(host: str, image: str, count: int) -> float | None:
    env = {**os.environ, "DOCKER_HOST": host, "TESTCONTAINERS_RYUK_DISABLED": "true"}
    done = subprocess.run([sys.executable, "-c", _TESTCONTAINERS, image, str(count)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        print(f"    testcontainers failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return float(done.stdout.strip().splitlines()[-1])


def bench_list(host: str, image: str, count: int, seconds: float) -> float:
    import docker

    client = docker.APIClient(base_url=host, timeout=120)
    made = []
    try:
        for _ in range(count):
            cid = client.create_container(image, ["sleep", "300"],
                                          labels={"isobox-bench": "serve"})["Id"]
            client.start(cid)
            made.append(cid)
        client.containers()
        done = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            assert len(client.containers(filters={"label": "isobox-bench=serve"})) == count
            done += 1
        return done / (time.perf_counter() - start)
    finally:
        for cid in made:
            client.remove_container(cid, force=True)
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="docker run samples (median)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per rate measurement")
    parser.add_argument("--containers", type=int, default=20, help="testcontainers session")
    parser.add_argument("--listed", type=int, default=50, help="containers behind /json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the native engine, rootful)")
    tag = f"isobox-bench/serve:{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="isobox-bench-serve-") as tmp:
        root = Path(tmp)
        rootfs = root / "rootfs"
        subprocess.run([str(ROOTFS_TOOL), str(rootfs)], check=True, capture_output=True)
        home = root / "home"
        home.mkdir()
        env = {**os.environ, "ISOBOX_HOME": str(home)}
        subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "import", str(rootfs), tag],
                       check=True, capture_output=True, env=env)
        server = _start_server(home, root / "docker.sock", root / "serve.log")
        targets = {"isobox serve": f"unix://{root / 'docker.sock'}"}
        daemon = None
        if _dockerd_answers():
            from pytest_isobox.engine import open_engine

            daemon = open_engine("docker")
            daemon.import_rootfs(rootfs, tag)
            targets["dockerd"] = DOCKERD
        else:
            print("(no dockerd answers: isobox serve alone)")
        try:
            results: dict[str, dict[str, str]] = {name: {} for name in targets}
            for name, host in targets.items():
                print(f"{name}:", flush=True)
                run = bench_run(host, tag, args.runs)
                results[name]["docker run --rm true"] = f"{run * 1000:9.1f} ms"
                print(f"    docker run --rm IMAGE true    {run * 1000:9.1f} ms", flush=True)
                tc = bench_testcontainers(host, tag, args.containers)
                text = "failed" if tc is None else f"{tc:9.2f} s"
                results[name][f"testcontainers x{args.containers}"] = text
                print(f"    testcontainers x{args.containers} (port, log wait)  {text}",
                      flush=True)
                rate = bench_list(host, tag, args.listed, args.seconds)
                results[name][f"GET /containers/json ({args.listed})"] = f"{rate:9.0f} /s"
                print(f"    GET /containers/json, {args.listed} containers  {rate:9.0f} /s",
                      flush=True)
            print("\nside by side:")
            names = list(targets)
            print(f"{'':34}" + "".join(f"{n:>16}" for n in names))
            for metric in results[names[0]]:
                print(f"{metric:34}" + "".join(f"{results[n][metric]:>16}" for n in names))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
            if daemon is not None:
                try:
                    daemon.remove_image(tag, force=True)
                finally:
                    daemon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
