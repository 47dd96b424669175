"""What the plugin costs a pytest session that uses no isobox fixture: the same one-test project
run with the plugin and with `-p no:isobox`, each as a fresh process, side by side.

Usage: python3 benchmarks/bench_plugin.py [--runs 15]
The median wall-clock time of each whole `pytest` run is printed, and the difference (the
plugin's fixed cost: its import, its options, its hooks); the runs with and without the plugin
alternate, so a loaded machine's drift hits both alike. On a loaded machine the difference is
below the noise of a whole run, so the plugin's import alone is timed too, in-process after
pytest's (a fresh process each time); nothing is asserted.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


IMPORT_TIME = ("import time, pytest; started = time.perf_counter(); import pytest_isobox.plugin; "
               "print((time.perf_counter() - started) * 1000)")


def medians_ms(argvs: list[list[str]], cwd: Path, runs: int, env: dict[str, str]
               ) -> list[float]:
    """The median time of each command, the commands run in turn `runs` times."""
    for argv in argvs:
        subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)  # warm caches
    times: list[list[float]] = [[] for _ in argvs]
    for _ in range(runs):
        for argv, spent in zip(argvs, times):
            started = time.perf_counter()
            subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)
            spent.append((time.perf_counter() - started) * 1000)
    return [statistics.median(spent) for spent in times]


def import_ms(cwd: Path, runs: int, env: dict[str, str]) -> float:
    """The plugin's import alone, pytest already imported, median of fresh processes."""
    return statistics.median(
        float(subprocess.run([sys.executable, "-c", IMPORT_TIME], cwd=cwd, env=env,
                             capture_output=True, text=True, check=True).stdout)
        for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "pytest_isobox"), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="bench-plugin-") as tmp:
        project = Path(tmp)
        (project / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_plain.py"]
        floor, without, with_plugin = medians_ms(
            [[sys.executable, "-c", "import pytest"], [*base, "-p", "no:isobox"], base],
            project, args.runs, env)
        imported = import_ms(project, args.runs, env)
    print(f"# a one-test session, {args.runs} fresh processes per figure, median ms")
    print(f"python -c 'import pytest'      {floor:7.1f} ms")
    print(f"pytest -p no:isobox            {without:7.1f} ms")
    print(f"pytest (plugin loaded, unused) {with_plugin:7.1f} ms")
    print(f"the plugin's cost              {with_plugin - without:7.1f} ms "
          f"({with_plugin / without:.2f}x the session without it)")
    print(f"import pytest_isobox.plugin    {imported:7.1f} ms (in-process, after pytest's)")


if __name__ == "__main__":
    main()
