"""One benchmark run on two revisions, one after the other in the same run: before/after figures
of a change (the architecture redesign asks for bench_start, bench_build and bench_network).

Usage: python3 benchmarks/compare_revisions.py BEFORE [AFTER] -- bench_start.py [--runs 50]
BEFORE and AFTER are git revisions (AFTER defaults to the working tree). Each is checked out in a
temporary worktree (removed at the end) and runs its own copy of the benchmark with its own
package first on sys.path, so both import the code of their revision. Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_bench(tree: Path, label: str, bench: str, args: list[str]) -> int:
    script = tree / "benchmarks" / bench
    if not script.exists():
        print(f"## {label}: {bench} does not exist in this revision")
        return 1
    print(f"## {label} ({tree})", flush=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, str(script), *args], cwd=tree, env=env,
                          check=False).returncode


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__.split("\n\n")[1])
    cut = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", help="default: the working tree")
    args = parser.parse_args(argv[:cut])
    bench = argv[cut + 1:]
    if not bench:
        parser.error("name the benchmark after --, e.g. -- bench_start.py --runs 30")
    status = 0
    with tempfile.TemporaryDirectory(prefix="isobox-compare-") as tmp:
        trees = []
        for label, rev in (("before", args.before), ("after", args.after)):
            if rev is None:
                trees.append(("after: working tree", ROOT))
                continue
            tree = Path(tmp) / label
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach",
                            str(tree), rev], check=True)
            trees.append((f"{label}: {rev}", tree))
        try:
            for label, tree in trees:
                status |= run_bench(tree, label, bench[0], bench[1:])
        finally:
            for _, tree in trees:
                if tree != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                    str(tree)], check=False)
    return status


if __name__ == "__main__":
    sys.exit(main())
