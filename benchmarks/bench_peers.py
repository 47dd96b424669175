"""A session of 20 function-scoped containers with a published port and an HTTP readiness
check: pytest-isobox (--isobox-engine=docker) next to testcontainers-python and
pytest-docker-tools, on the same Docker daemon, in one run; and the same isobox project on the
native engine (no daemon), the figure the fixed-costs issue compares with the peers.

Usage: python3 benchmarks/bench_peers.py [--containers 20] [--venv DIR] [--rounds 1]

The peers are installed in a virtual environment of the benchmark's own (default
/tmp/isobox-bench-peers-venv, made on first use with the system's site packages):
    python3 -m venv --system-site-packages DIR
    DIR/bin/pip install testcontainers pytest-docker-tools -e .
Each tool runs its own small pytest project (written to a temp dir) of N tests; every test
gets a fresh container of one image (busybox `httpd -f -p 8080`, imported into the daemon
here), waits until GET / on the published port answers 200 and asks it once. The wall-clock
time of each whole `pytest` run is printed with the ratios to isobox, and, from a small timing
plugin loaded into every run alike, each container's setup+teardown (the fixture's own cost:
create, start, publish, readiness, stop, remove; median and total over the tests): the whole
run also holds pytest's start and a tool's session-wide costs. Nothing is asserted.
The image is removed from the daemon at the end, and so are any containers a tool left.

Every row runs in the same pytest environment: PYTEST_DISABLE_PLUGIN_AUTOLOAD=1, and `-p`
for exactly the plugins that row uses (the timing plugin; pytest_isobox.plugin for the isobox
rows, pytest_docker_tools.plugin for its row; testcontainers has none). Autoloading would make
every row import every installed plugin, each row paying for the others' (pytest-docker-tools'
plugin alone imports the docker SDK, some 0.1-0.3 s), and for any unrelated plugin in the venv
(hypothesis, xdist). Python writes bytecode as it does for a user (PYTHONDONTWRITEBYTECODE is
dropped from the runs' environment, and the editable isobox package is compiled first, as pip
compiled the peers' at install). The bare start of pytest in that environment (one empty test,
no tool's plugin) is printed for reference: every row's whole run holds it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOTFS_TOOL = ROOT / "fixtures" / "busybox-rootfs"
DEFAULT_VENV = Path("/tmp/isobox-bench-peers-venv")
PORT = 8080
COMMAND = ["httpd", "-f", "-p", str(PORT), "-h", "/www"]

# The same readiness loop for the peers (isobox uses its wait.http strategy): GET / until 200,
# polled on isobox's schedule (pytest_isobox.plugin.wait: 1 ms first, x1.5 up to 250 ms).
_READY = '''
import time, urllib.request

def wait_http(host, port, timeout=30.0):
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"http://{host}:{port}/ not ready")
        time.sleep(delay)  # polling the condition itself, as the peers' own waits do
        delay = min(delay * 1.5, 0.25)
'''

# Loaded into every tool's run (-p): each test's setup+teardown time, written as JSON.
_TIMING_PLUGIN = '''
import json, os

_spent = {}

def pytest_runtest_logreport(report):
    if report.when in ("setup", "teardown"):
        _spent[report.nodeid] = _spent.get(report.nodeid, 0.0) + report.duration

def pytest_sessionfinish(session):
    with open(os.environ["BENCH_TIMING_FILE"], "w") as out:
        json.dump(_spent, out)
'''

_TEST = '''
import urllib.request

def test_{i}({fixture}):
    host, port = {addr}
    with urllib.request.urlopen(f"http://{{host}}:{{port}}/", timeout=5) as resp:
        assert resp.read() == b"hello\\n"
'''


def projects(folder: Path, image: str, count: int) -> dict[str, Path]:
    """One pytest project per tool, each with `count` tests of one fresh container."""
    made = {}
    isobox = folder / "isobox"
    isobox.mkdir()
    (isobox / "conftest.py").write_text(textwrap.dedent(f"""
        from pytest_isobox import container, wait

        web = container(image={image!r}, command={COMMAND!r}, ports=[{PORT}],
                        ready=wait.http({PORT}), scope="function")
    """))
    (isobox / "test_web.py").write_text("".join(
        _TEST.format(i=i, fixture="web", addr=f"web.get_addr({PORT})") for i in range(count)))
    made["isobox"] = isobox
    made["isobox (native)"] = isobox  # the same project, --isobox-engine=native

    tc = folder / "testcontainers"
    tc.mkdir()
    (tc / "conftest.py").write_text(_READY + textwrap.dedent(f"""
        import pytest
        from testcontainers.core.container import DockerContainer

        @pytest.fixture
        def web():
            box = DockerContainer({image!r}).with_command({COMMAND!r}).with_exposed_ports({PORT})
            box.start()
            try:
                addr = (box.get_container_host_ip(), int(box.get_exposed_port({PORT})))
                wait_http(*addr)
                yield addr
            finally:
                box.stop()
    """))
    (tc / "test_web.py").write_text("".join(
        _TEST.format(i=i, fixture="web", addr="web") for i in range(count)))
    made["testcontainers"] = tc

    pdt = folder / "pytest_docker_tools"
    pdt.mkdir()
    (pdt / "conftest.py").write_text(_READY + textwrap.dedent(f"""
        import pytest
        from pytest_docker_tools import container

        web_box = container(image={image!r}, command={COMMAND!r},
                            ports={{"{PORT}/tcp": None}}, scope="function")

        @pytest.fixture
        def web(web_box):
            addr = ("127.0.0.1", int(web_box.ports["{PORT}/tcp"][0]))
            wait_http(*addr)
            return addr
    """))
    (pdt / "test_web.py").write_text("".join(
        _TEST.format(i=i, fixture="web", addr="web") for i in range(count)))
    made["pytest-docker-tools"] = pdt
    return made


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import testcontainers, pytest_docker_tools, pytest_isobox"]
    if python.exists() and subprocess.run(probe, capture_output=True,
                                          check=False).returncode == 0:
        return python
    print(f"making {venv}: python3 -m venv --system-site-packages {venv} && "
          f"{venv}/bin/pip install testcontainers pytest-docker-tools -e {ROOT}")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    "testcontainers", "pytest-docker-tools", "-e", str(ROOT)], check=True)
    return python


def import_native(python: Path, work: Path, image: str) -> Path:
    """The benchmark's image in an isobox home of its own, for the native engine's run."""
    home = work / "isobox-home"
    subprocess.run([str(python), "-m", "pytest_isobox.cli", "import", str(work / "rootfs.tar"),
                    image], env={**os.environ, "ISOBOX_HOME": str(home)}, check=True,
                   capture_output=True)
    return home


def make_image(work: Path) -> str:
    rootfs = work / "rootfs"
    subprocess.run([str(ROOTFS_TOOL), str(rootfs)], check=True, capture_output=True)
    (rootfs / "www").mkdir()
    (rootfs / "www" / "index.html").write_text("hello\n")
    image = f"isobox-bench/httpd:{uuid.uuid4().hex[:8]}"
    tar = work / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    subprocess.run(["docker", "import", str(tar), image], check=True, capture_output=True)
    return image


# The plugin each row loads besides the timing one (autoloading is off for every row).
PLUGINS = {"isobox": ["-p", "pytest_isobox.plugin", "--isobox-engine=docker"],
           "isobox (native)": ["-p", "pytest_isobox.plugin", "--isobox-engine=native"],
           "testcontainers": [],
           "pytest-docker-tools": ["-p", "pytest_docker_tools.plugin"],
           "bare pytest": []}


def run_pytest(python: Path, project: Path, tool: str, home: Path) -> tuple[float, list[float]]:
    """The whole run's seconds and each test's setup+teardown seconds."""
    timing = project.parent / "timing.json"
    argv = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "bench_timing",
            *PLUGINS[tool], str(project)]
    env = {**os.environ, "TESTCONTAINERS_RYUK_DISABLED": "true",  # no reaper image pulled
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "BENCH_TIMING_FILE": str(timing),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(project.parent / "timing"),
                                                       os.environ.get("PYTHONPATH")]))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if tool == "isobox (native)":
        env["ISOBOX_HOME"] = str(home)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise SystemExit(f"{tool}: pytest failed ({done.returncode}):\n" + "\n".join(tail))
    return seconds, list(json.loads(timing.read_text()).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1, help="runs of each tool (median)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args()
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        raise SystemExit("no Docker daemon answers (scripts/start-dockerd)")
    python = ensure_venv(args.venv)
    work = Path(tempfile.mkdtemp(prefix="isobox-bench-peers-"))
    image = ""
    try:
        image = make_image(work)
        made = projects(work, image, args.containers)
        (work / "timing").mkdir()
        (work / "timing" / "bench_timing.py").write_text(_TIMING_PLUGIN)
        bare = work / "bare"
        bare.mkdir()
        (bare / "test_bare.py").write_text("def test_bare():\n    pass\n")
        made["bare pytest"] = bare
        home = import_native(python, work, image)
        subprocess.run([str(python), "-m", "compileall", "-q", str(ROOT / "pytest_isobox")],
                       check=True, capture_output=True)
        times: dict[str, list[float]] = {tool: [] for tool in made}
        fixtures: dict[str, list[float]] = {tool: [] for tool in made}
        for _ in range(args.rounds):
            for tool, project in made.items():  # interleaved, so drift hits all alike
                seconds, each = run_pytest(python, project, tool, home)
                times[tool].append(seconds)
                fixtures[tool] += each
        ours = statistics.median(times["isobox"])
        print(f"{args.containers} function-scoped containers, published port + HTTP readiness, "
              f"same dockerd ({args.rounds} round(s), median):")
        print(f"  {'':22} {'whole run':>9}   {'setup+teardown per container':>28}")
        print(f"  {'':22} {'':>9}   {'median':>8} {'total':>8}")
        bare_start = statistics.median(times.pop("bare pytest"))
        for tool, values in times.items():
            value = statistics.median(values)
            ratio = "" if tool == "isobox" else f"   {value / ours:5.2f}x isobox's run"
            print(f"  {tool:22} {value:7.2f} s   {statistics.median(fixtures[tool]) * 1000:6.1f} "
                  f"ms {sum(fixtures[tool]) / args.rounds:6.2f} s{ratio}")
        print(f"  {'bare pytest':22} {bare_start:7.2f} s   (1 empty test: pytest's own start and "
              f"exit, in every row)")
        native = statistics.median(times["isobox (native)"])
        native_each = statistics.median(fixtures["isobox (native)"])
        for tool in ("testcontainers", "pytest-docker-tools"):
            print(f"  {tool} / isobox (native): whole run "
                  f"{statistics.median(times[tool]) / native:5.1f}x, per container "
                  f"{statistics.median(fixtures[tool]) / native_each:5.1f}x, whole run less "
                  f"the bare start {(statistics.median(times[tool]) - bare_start) / (native - bare_start):5.1f}x")
    finally:
        if image:
            leftovers = subprocess.run(["docker", "ps", "-aq", "--filter", f"ancestor={image}"],
                                       capture_output=True, text=True, check=False).stdout.split()
            if leftovers:
                subprocess.run(["docker", "rm", "-f", *leftovers], capture_output=True,
                               check=False)
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
