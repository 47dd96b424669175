"""Build speed, side by side with `docker build` on the same contexts.

Prints, for isobox (in-process, native engine) and Docker (the `docker build` command, when a
daemon answers):
  1. a fully cached rebuild of a six-step Dockerfile (target: <= 10 ms in-process),
  2. a cold build's overhead per RUN step beyond the command itself (target: <= 30 ms), both
     sides with --network none, with where isobox's time goes,
  3. the time to checksum a 10,000-file context, cold and with the stat cache warm.

Run as root:  python benchmarks/bench_build.py [--repeat N]
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
from collections.abc import Iterator
from pathlib import Path

from pytest_isobox.builder.builder import Builder
from pytest_isobox.builder.context import BuildContext, StatCache
from pytest_isobox.builder.copying import CopyStep

REPO = Path(__file__).resolve().parent.parent
ROOTFS_TOOL = REPO / "fixtures" / "busybox-rootfs"
BASE = "isobox-bench/busybox:latest"
SIX_STEPS = f"""\
FROM {BASE}
ENV APP_HOME=/app
WORKDIR /app
COPY src/ ./src/
RUN echo built > /app/built.txt
CMD ["cat", "/app/built.txt"]
"""
RUN_STEPS = 10
HOUR_AGO = time.time() - 3600


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms"


def _write_context(root: Path, dockerfile: str, files: int = 20) -> Path:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    for i in range(files):
        path = root / "src" / f"d{i % 100}" / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {i}\n" * 4)
        os.utime(path, (HOUR_AGO, HOUR_AGO))  # an unchanged checkout, not files written just now
    return root


def _docker_ok() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], check=False, capture_output=True).returncode == 0


_DOCKER_IMAGES: set[str] = set()  # what the Docker side built, removed at the end


def _docker_build(context: Path, *extra: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(["docker", "build", "-q", *extra, str(context)], check=True,
                          capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    elapsed = time.perf_counter() - started
    _DOCKER_IMAGES.add(done.stdout.strip())
    return elapsed


def bench_checksum(work: Path, repeat: int) -> None:
    ctx_dir = _write_context(work / "big", "FROM scratch\nCOPY . /ctx/\n", files=10_000)
    cache_dir = work / "statcache"
    step = CopyStep.plan(cmd="COPY", sources=["."], dest="/ctx/", workdir="/", flags={},
                         add=False, heredocs={})

    def checksum(stat_cache: StatCache | None) -> float:
        started = time.perf_counter()
        step.context_checksum(BuildContext(ctx_dir, stat_cache=stat_cache))
        elapsed = time.perf_counter() - started
        if stat_cache is not None:
            stat_cache.save()
        return elapsed

    cold = [checksum(None) for _ in range(repeat)]
    checksum(StatCache.for_context(cache_dir, ctx_dir))  # fill the stat cache once
    warm = [checksum(StatCache.for_context(cache_dir, ctx_dir)) for _ in range(repeat)]
    print("\n3. checksum of a 10,000-file context (walk + .dockerignore + hash)")
    print(f"   isobox, reading every file     {_median_ms(cold)}")
    print(f"   isobox, stat cache warm        {_median_ms(warm)}")
    if _docker_ok():
        _docker_build(ctx_dir)  # cold: fills Docker's cache
        docker = [_docker_build(ctx_dir) for _ in range(max(1, repeat // 2))]
        print(f"   docker build, all cached       {_median_ms(docker)}  (context upload +"
              " checksum + cache lookups)")


def bench_builds(work: Path, repeat: int) -> None:
    from pytest_isobox.native.engine import NativeEngine

    home = work / "home"
    rootfs = work / "rootfs"
    subprocess.run([str(ROOTFS_TOOL), str(rootfs)], check=True, capture_output=True)
    engine = NativeEngine(home=home)
    try:
        engine.import_rootfs(rootfs, BASE)
        builder = Builder(engine=engine, cache_dir=home / "buildcache")
        six = _write_context(work / "six", SIX_STEPS)
        builder.build(six)
        cached = []
        for _ in range(repeat * 5):
            started = time.perf_counter()
            builder.build(six)
            cached.append(time.perf_counter() - started)

        runs = "".join(f"RUN true # step {i}\n" for i in range(RUN_STEPS))
        many = _write_context(work / "runs", f"FROM {BASE}\n{runs}")
        per_step: list[float] = []
        timed = _TimedEngine(engine)
        timed_builder = Builder(engine=timed, cache_dir=home / "buildcache")  # type: ignore[arg-type]
        inner: dict[str, float] = {}
        store = engine.images_store
        _time_methods(store, inner, {"resolve": "resolve base", "_layer_from_upper": "layer tar",
                                     "_record_image": "config+record"})
        _time_methods(store.layers, inner, {"ensure": "unpacked layer"})
        _time_methods(timed_builder.cache, inner, {"lock": "step lock", "put": "cache entry"})
        for _ in range(repeat):
            steps: list = []
            timed_builder.build(many, no_cache=True, network="none", on_step=steps.append)
            per_step.extend(s.seconds for s in steps if s.instruction.startswith("RUN"))
        command = _command_time(rootfs)
    finally:
        engine.close()
    print("1. fully cached rebuild of a six-step Dockerfile")
    print(f"   isobox, in-process             {_median_ms(cached)}   (target <= 10 ms)")
    print(f"\n2. cold build, per RUN step ({RUN_STEPS} x `RUN true`, --no-cache)")
    print(f"   isobox, per step               {_median_ms(per_step)}")
    print(f"   the command alone              {command * 1000:8.1f} ms   (busybox `true`, fork+exec"
          " on the host)")
    print(f"   isobox, overhead per RUN       {(statistics.median(per_step) - command) * 1000:8.1f}"
          " ms   (target <= 30 ms)")
    count = len(per_step)
    print("   where a RUN step's time goes (engine calls, mean per step):")
    for name, total in sorted(timed.totals.items(), key=lambda kv: -kv[1]):
        print(f"     {name:<14} {total / count * 1000:8.1f} ms")
        if name == "commit":
            for part in ("resolve base", "layer tar", "unpacked layer", "config+record"):
                print(f"       {part:<16} {inner.get(part, 0.0) / count * 1000:6.1f} ms")
    builder_own = statistics.mean(per_step) - sum(timed.totals.values()) / count
    print(f"     {'builder itself':<14} {builder_own * 1000:8.1f} ms")
    for part in ("step lock", "cache entry"):
        print(f"       {part:<16} {inner.get(part, 0.0) / count * 1000:6.1f} ms")
    if _docker_ok():
        subprocess.run(["docker", "import", "-", BASE], input=_tar(rootfs), check=True,
                       capture_output=True)
        _docker_build(six)
        docker_cached = [_docker_build(six) for _ in range(repeat)]
        docker_runs = [_docker_build(many, "--no-cache", "--network", "none") / (RUN_STEPS + 1)
                       for _ in range(max(1, repeat // 2))]
        print("\n   docker build (classic builder, CLI wall time):")
        print(f"   docker, cached six-step rebuild {_median_ms(docker_cached)}")
        print(f"   docker, cold, per step          {_median_ms(docker_runs)}")
    else:
        print("\n   (no Docker daemon answers: Docker figures skipped)")


class _TimedEngine:
    """Forwards to an engine and adds up the time spent in each of its methods."""

    def __init__(self, engine: object) -> None:
        self._engine = engine
        self.totals: dict[str, float] = {}

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._engine, name)
        if not callable(attr):
            return attr

        def timed(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                result = attr(*args, **kwargs)
                # a generator (logs) does its work while consumed: consume it here
                return iter(list(result)) if isinstance(result, Iterator) else result
            finally:
                self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - started
        return timed


def _time_methods(obj: object, totals: dict[str, float], names: dict[str, str]) -> None:
    """Wrap methods of `obj` (this instance only) to add their time to `totals[label]`; for
    a lock (a label ending in "lock") the time until it is entered counts."""
    for name, label in names.items():
        method = getattr(obj, name)

        def timed(*args: object, _method=method, _label=label, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                result = _method(*args, **kwargs)
                if _label.endswith("lock"):
                    return _TimedEntry(result, totals, _label, started)
                return result
            finally:
                totals[_label] = totals.get(_label, 0.0) + time.perf_counter() - started
        setattr(obj, name, timed)


class _TimedEntry:
    """A context manager whose entering (waiting for a lock) is added to a total."""

    def __init__(self, inner: object, totals: dict[str, float], label: str,
                 started: float) -> None:
        self._inner, self._totals, self._label = inner, totals, label

    def __enter__(self) -> object:
        started = time.perf_counter()
        try:
            return self._inner.__enter__()  # type: ignore[attr-defined]
        finally:
            self._totals[self._label] += time.perf_counter() - started

    def __exit__(self, *exc: object) -> object:
        return self._inner.__exit__(*exc)  # type: ignore[attr-defined]


def _command_time(rootfs: Path) -> float:
    """How long the command itself takes: the image's busybox `true`, run on the host."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([str(rootfs / "bin" / "busybox"), "true"], check=True)
        times.append(time.perf_counter() - started)
    return min(times)


def _tar(root: Path) -> bytes:
    return subprocess.run(["tar", "-C", str(root), "-c", "."], check=True,
                          capture_output=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="isobox-bench-build-") as tmp:
        work = Path(tmp)
        try:
            bench_builds(work, args.repeat)
        except ImportError as exc:
            print(f"(native engine not importable: {exc}; build figures skipped)")
        bench_checksum(work, args.repeat)
    if _docker_ok():
        subprocess.run(["docker", "rmi", "-f", BASE, *_DOCKER_IMAGES], check=False,
                       capture_output=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
