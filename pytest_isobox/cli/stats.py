"""`isobox stats`: Docker's live table (CPU %, memory usage / limit and %, net I/O, PIDs),
redrawn each second, or one sample with --no-stream; --format as Docker's."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from pytest_isobox.cli.output import _size, compile_format
from pytest_isobox.engine import ContainerNotFound, Engine, IsoboxError

HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
           "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
           "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
TABLE = ("table {{.ID}}\\t{{.Name}}\\t{{.CPUPerc}}\\t{{.MemUsage}}\\t{{.MemPerc}}\\t"
         "{{.NetIO}}\\t{{.BlockIO}}\\t{{.PIDs}}")
INTERVAL = 1.0  # seconds between samples, as Docker's stats stream


def binary_size(n: float) -> str:
    """Docker's memory sizes: 1.5MiB, 25.3GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.4g}{unit}"
        n /= 1024
    return str(n)


def _host_memory() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _net_io(pid: int | None) -> str:
    """Bytes received and sent by the container's interfaces but lo (its /proc/PID/net/dev
    is its network namespace's); -- when the process is not visible from here."""
    if not pid:
        return "--"
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return "--"
    rx = tx = 0
    for line in lines:
        name, _, numbers = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = numbers.split()
        rx, tx = rx + int(fields[0]), tx + int(fields[8])
    return f"{_size(rx)} / {_size(tx)}"


class _Sampler:
    """CPU % over the time between two samples of a container's CPU time (100% = one CPU)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last: dict[str, tuple[float, int]] = {}
        self.host_memory = _host_memory()

    def row(self, container: str) -> dict | None:
        try:
            doc = self.engine.inspect(container)
            stats = self.engine.stats(container)
        except ContainerNotFound:
            return None
        now, cid = time.monotonic(), doc["Id"]
        before = self.last.get(cid)
        self.last[cid] = (now, stats.cpu_time_ns)
        cpu = "--"
        if before is not None and now > before[0]:
            cpu = f"{(stats.cpu_time_ns - before[1]) / 1e9 / (now - before[0]) * 100:.2f}%"
        limit = int((doc.get("HostConfig") or {}).get("Memory") or 0) or self.host_memory
        running = (doc.get("State") or {}).get("Running")
        return {
            "Container": container, "ID": cid[:12], "Name": doc["Name"].lstrip("/"),
            "CPUPerc": cpu if running else "0.00%",
            "MemUsage": f"{binary_size(stats.memory_current)} / {binary_size(limit)}",
            "MemPerc": f"{stats.memory_current / limit * 100:.2f}%" if limit else "--",
            "NetIO": _net_io((doc.get("State") or {}).get("Pid")) if running else "0B / 0B",
            "BlockIO": f"{_size(stats.block_read)} / {_size(stats.block_write)}",
            "PIDs": str(stats.pids),
        }


def cmd_stats(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.gotemplate import render_rows

    template = args.format or TABLE
    compile_format(template)
    named = list(args.containers)
    for c in named:  # a name that is not there: one line, before any output
        engine.state(c)
    sampler = _Sampler(engine)

    def containers() -> list[str]:
        if named:
            return named
        return [s.id for s in engine.containers(all=args.all)]

    def sample() -> list[dict]:
        return [r for r in (sampler.row(c) for c in containers()) if r is not None]

    sample()  # the first sample only sets where CPU time is counted from
    time.sleep(INTERVAL)
    while True:
        lines = render_rows(template, sample(), HEADERS, default_table=TABLE)
        if not args.no_stream and sys.stdout.isatty():
            print("\033[2J\033[H", end="")  # Docker redraws the screen
        print("\n".join(lines), flush=True)
        if args.no_stream:
            return 0
        try:
            time.sleep(INTERVAL)
        except KeyboardInterrupt:
            return 0
        if named and not any(_alive(engine, c) for c in named):
            return 0


def _alive(engine: Engine, container: str) -> bool:
    try:
        return engine.state(container).status in ("running", "paused")
    except IsoboxError:
        return False
