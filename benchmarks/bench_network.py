#!/usr/bin/env python3
"""Networking figures, side by side with Docker in the same run.

1. start-to-ready: from asking for a container on the default bridge with one published port
   (busybox `nc` echo) to the first echo through that port, median of N runs; the same for
   `docker run -d -p 127.0.0.1:PORT:8080` on the same rootfs imported into Docker, when a
   daemon answers. Target: 20 ms or less for isobox.
2. the network part alone: attach + publish for a bare network namespace (no container), with
   DNAT and with the relay, and the detach after the namespace's process has ended (as the
   engine detaches a container that has exited).
3. throughput of one TCP stream into a sink: through a published port (DNAT, and the
   userland relay), straight to the container's address, and over plain loopback on the host.

Run as root: python benchmarks/bench_network.py [--runs 30] [--megabytes 512]
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from pytest_isobox.engine import ContainerSpec, PortSpec
from pytest_isobox.native.network.manager import Attachment, NetworkManager
from pytest_isobox.native.network.sandbox import NetnsProcess, send_line

ROOTFS_TOOL = Path(__file__).resolve().parents[1] / "fixtures" / "busybox-rootfs"
ECHO = ["nc", "-ll", "-p", "8080", "-e", "cat"]
CHUNK = 1 << 20


def echo_once(addr: tuple[str, int], deadline: float) -> None:
    """Connect until the service answers one echo; each refusal is retried at once."""
    while True:
        try:
            with socket.create_connection(addr, timeout=2) as conn:
                conn.sendall(b"ping\n")
                if conn.recv(16):
                    return
        except (ConnectionRefusedError, ConnectionResetError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no echo from {addr}")


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.1f} ms (min {min(samples) * 1000:.1f}, " \
           f"max {max(samples) * 1000:.1f}, n={len(samples)})"


def bench_isobox(rootfs: Path, home: Path, runs: int) -> list[float] | None:
    try:
        from pytest_isobox.native.engine import NativeEngine
    except ImportError:
        print("isobox start-to-ready: NativeEngine not available, skipped")
        return None
    engine = NativeEngine(home)
    samples = []
    try:
        engine.import_rootfs(rootfs, "isobox-bench-busybox:latest")
        spec = ContainerSpec(image="isobox-bench-busybox:latest", command=ECHO,
                             ports=[PortSpec.parse("8080")])
        for _ in range(runs + 1):
            start = time.perf_counter()
            state = engine.run(spec)
            echo_once(tuple(state.ports["8080/tcp"][0]), time.monotonic() + 10)
            samples.append(time.perf_counter() - start)
            engine.remove(state.id, force=True)
    finally:
        engine.close()
        if engine.network is not None:
            engine.network.destroy_all_if_unused()
    return samples[1:]  # the first run also creates the default bridge


def docker_ok() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, check=False).returncode == 0


def bench_docker(rootfs: Path, runs: int) -> list[float] | None:
    if not docker_ok():
        print("docker start-to-ready: no Docker daemon answers, skipped")
        return None
    image = f"isobox-bench-busybox:{secrets.token_hex(4)}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(rootfs, arcname=".")
    subprocess.run(["docker", "import", "-", image], input=buf.getvalue(), check=True,
                   capture_output=True)
    samples = []
    try:
        for _ in range(runs + 1):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            start = time.perf_counter()
            cid = subprocess.run(
                ["docker", "run", "-d", "-p", f"127.0.0.1:{port}:8080", image, *ECHO],
                check=True, capture_output=True, text=True).stdout.strip()
            try:
                echo_once(("127.0.0.1", port), time.monotonic() + 20)
                samples.append(time.perf_counter() - start)
            finally:
                subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)
    finally:
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True, check=False)
    return samples[1:]


def sink(channel: socket.socket) -> None:
    """Accept connections on 0.0.0.0:8080; count each one's bytes and answer the count."""
    server = socket.create_server(("0.0.0.0", 8080))
    send_line(channel, "listening")
    count_forever(server)


def count_forever(server: socket.socket) -> None:
    """Answer each connection with the number of bytes it sent."""
    while True:
        conn, _ = server.accept()
        with conn:
            total = 0
            while data := conn.recv(1 << 20):
                total += len(data)
            conn.sendall(str(total).encode())


def stream(addr: tuple[str, int], megabytes: int) -> float:
    """MB/s of one connection sending `megabytes` into a sink that confirms the count."""
    payload = b"x" * CHUNK
    count = megabytes * (1 << 20) // CHUNK
    start = time.perf_counter()
    with socket.create_connection(addr, timeout=30) as conn:
        for _ in range(count):
            conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        assert int(conn.recv(64)) == count * CHUNK
    return megabytes / (time.perf_counter() - start)


def bench_bare_netns(home: Path, runs: int, megabytes: int) -> None:
    """Attach + publish of a bare netns with DNAT and with the relay; then throughput on every
    path, measured in interleaved rounds so that a busy machine skews them all alike."""
    pid, loopback_addr = host_sink()
    live: list[tuple[NetworkManager, NetnsProcess, str]] = []
    paths = {"plain loopback on the host": loopback_addr}
    try:
        for publish in ("dnat", "relay"):
            manager = NetworkManager(home, publish=publish)  # type: ignore[arg-type]
            samples, detaches, proc, cid, attachment = attach_runs(manager, home, runs)
            live.append((manager, proc, cid))
            print(f"attach + publish, bare netns ({publish:5}): {median_ms(samples)}")
            print(f"detach, bare netns ({publish:5}):          {median_ms(detaches)}")
            paths[f"published port 127.0.0.1, {publish}"] = attachment.ports["8080/tcp"][0]
            if publish == "dnat":
                paths["container address over the bridge"] = (attachment.ips["bridge"], 8080)
        best = dict.fromkeys(paths, 0.0)
        for _ in range(3):
            for name, addr in paths.items():
                best[name] = max(best[name], stream(addr, megabytes))
        loopback = best["plain loopback on the host"]
        print(f"throughput, one TCP stream of {megabytes} MiB into a Python sink (best of 3):")
        for name, rate in best.items():
            print(f"  {name:38} {rate:7.0f} MB/s  ({rate / loopback:.0%} of loopback)")
    finally:
        for manager, proc, cid in live:
            manager.detach(cid)
            proc.stop()
            manager.close()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def attach_runs(manager: NetworkManager, home: Path, runs: int) -> tuple[
        list[float], list[float], NetnsProcess, str, Attachment]:
    """Time attach+publish `runs` times (after one warm-up), and each detach after its
    namespace's process ended; the last one stays attached.

    The namespace holders are forked before any timing: for some milliseconds after a fork,
    this (large) process pays a copy-on-write fault for each page it writes, which would be
    counted as attach time. (In the runtime that cost belongs to starting the container.)"""
    spec = ContainerSpec(image="none", ports=[PortSpec.parse("8080")])
    samples: list[float] = []
    detaches: list[float] = []
    procs = [NetnsProcess(sink) for _ in range(runs + 1)]
    gc.collect()  # touches every object once: the copy-on-write faults are paid here
    for i, proc in enumerate(procs):
        cid = secrets.token_hex(32)
        start = time.perf_counter()
        attachment = manager.attach(cid, "bench", "bench", proc.pid, spec, home / "hosts")
        samples.append(time.perf_counter() - start)
        if i == runs:
            proc.start()
            assert proc.recv_line() == "listening"
            return samples[1:], detaches[1:], proc, cid, attachment
        proc.stop()
        start = time.perf_counter()
        manager.detach(cid)
        detaches.append(time.perf_counter() - start)
    raise AssertionError("unreachable")


def host_sink() -> tuple[int, tuple[str, int]]:
    """A sink on host loopback in a child process (not a thread: no GIL shared with the
    sender, as with the container's sink). Returns its pid and address."""
    server = socket.create_server(("127.0.0.1", 0))
    pid = os.fork()
    if pid == 0:
        try:
            count_forever(server)
        finally:
            os._exit(0)
    addr = server.getsockname()
    server.close()
    return pid, addr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--megabytes", type=int, default=512)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_network: run as root (network namespaces, iptables)")
    with tempfile.TemporaryDirectory(prefix="isobox-bench-net-") as tmp:
        tmp_path = Path(tmp)
        rootfs = tmp_path / "rootfs"
        subprocess.run([str(ROOTFS_TOOL), str(rootfs)], check=True, capture_output=True)
        # start-to-ready first: the kernel tears the bare runs' namespaces down for a while
        # after them, which would slow the containers' starts
        try:
            ours = bench_isobox(rootfs, tmp_path / "home", args.runs)
        except Exception as exc:  # noqa: BLE001 - report the engine's failure, go on with Docker
            print(f"isobox start-to-ready: failed: {exc}")
            ours = None
        bench_bare_netns(tmp_path / "home-bare", args.runs, args.megabytes)
        theirs = bench_docker(rootfs, args.runs)
        print("start-to-ready, bridge network + one published port, first echo through it:")
        if ours:
            print(f"  isobox:     {median_ms(ours)}")
        if theirs:
            print(f"  docker run: {median_ms(theirs)}")
        if ours and theirs:
            print(f"  docker / isobox: {statistics.median(theirs) / statistics.median(ours):.1f}x")


if __name__ == "__main__":
    main()
