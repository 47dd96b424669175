"""Podman's Docker-compatible API for tests: `podman system service` on a socket of the test's.

Its storage and run state are in a directory of the test's too (no image or container of the
machine's podman is seen or touched); `stop` ends the service by PID and removes the directory.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PodmanService:
    root: Path
    proc: subprocess.Popen

    @property
    def socket_path(self) -> Path:
        return self.root / "podman.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.")
        except OSError:
            return False


def start(timeout: float = 60.0) -> PodmanService:
    root = Path(tempfile.mkdtemp(prefix="isobox-podman-", dir="/tmp"))
    storage = ["--root", str(root / "storage"), "--runroot", str(root / "run"),
               "--tmpdir", str(root / "tmp"), "--cgroup-manager", "cgroupfs",
               "--events-backend", "file"]
    sock = root / "podman.sock"
    # Podman raises a root container's open-file and process limits to 1048576 / 4194304;
    # where this process may not (a sandbox caps them: here runc's setrlimit of nproc above
    # kernel.pid_max is refused) runc fails, so containers get ours, capped so.
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    limits = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(which)[1]
        hard = pid_max if hard == resource.RLIM_INFINITY else hard
        hard = min(hard, pid_max) if name == "nproc" else hard
        limits.append(f'"{name}={hard}:{hard}"')
    (root / "containers.conf").write_text(
        f"[containers]\ndefault_ulimits = [{', '.join(limits)}]\n")
    env = {**os.environ, "CONTAINERS_CONF": str(root / "containers.conf")}
    proc = subprocess.Popen(["podman", *storage, "system", "service", "--time=0",
                             f"unix://{sock}"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=open(root / "log", "wb"), env=env,  # noqa: SIM115
                            cwd=root)  # conmon writes files (an `oom` marker) in its cwd
    service = PodmanService(root, proc)
    deadline = time.monotonic() + timeout
    while not _answers(sock):  # the socket exists before it answers: poll the answer
        if proc.poll() is not None or time.monotonic() > deadline:
            log = (root / "log").read_text(errors="replace")[-2000:]
            stop(service)
            raise RuntimeError(f"podman system service did not answer on {sock}:\n{log}")
        time.sleep(0.05)
    return service


def stop(service: PodmanService) -> None:
    if service.proc.poll() is None:
        service.proc.send_signal(signal.SIGTERM)
        try:
            service.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.proc.kill()
            service.proc.wait()
    storage = ["--root", str(service.root / "storage"), "--runroot", str(service.root / "run")]
    subprocess.run(["podman", *storage, "rm", "-af"], capture_output=True, check=False)
    subprocess.run(["podman", *storage, "system", "reset", "-f"], capture_output=True,
                   check=False)
    prefix = str(service.root) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(service.root, ignore_errors=True)
