"""`isobox compose` on both engines and Debian's docker-compose 1.29 on dockerd run the same
project (data/) and give the same services, ports, answers across the network (service name
and alias) and shared volume; `down -v --rmi local` leaves nothing. A broken file: one line."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_isobox.engine import ImageNotFound, open_engine
from tests.conftest import docker_available
from tests.plugin.conftest import engine_problem
from tests.registry.conftest import docker_config, registry
from tests.registry.servers import Registry, have_registry

__all__ = ["docker_config", "registry"]  # the registry tests' fixtures, used here too

DATA = Path(__file__).parent / "data"
EXPECTED = {
    "services": ["client", "web"],
    "ports": {"client": ["9000/tcp"], "web": ["8000/tcp"]},
    "web index from the host": "<p>compose web</p>\n",
    "client's copy of web's greeting, from the host": "hello\n",
    "web health from client, by name": "ok\n",
    "web health from client, by alias": "ok\n",
    "web's row in ps": "healthy",
}


@dataclass
class Runner:
    """One way of running the project: a command line prefix and how to read its ports."""

    argv: list[str]
    env: dict[str, str]
    ports: Callable[[Runner], dict[str, dict[str, int]]]  # service -> {8000/tcp: host port}
    kind: str  # the engine the containers are on (docker-compose: docker)
    project: str
    file: Path = DATA / "compose.yaml"
    more_files: tuple[Path, ...] = ()  # merged over `file`, in order

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        files = [part for f in (self.file, *self.more_files) for part in ("-f", str(f))]
        proc = subprocess.run([*self.argv, *files, *args], capture_output=True,
                              text=True, env=self.env, timeout=600, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc


def _isobox_ports(run: Runner) -> dict[str, dict[str, int]]:
    rows = run("ps").stdout.splitlines()[1:]
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        found[row.split()[1]] = {key: int(port)
                                 for port, key in re.findall(r":(\d+)->(\d+/\w+)", row)}
    return found


def _compose_ports(run: Runner) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for service in run("ps", "--services", "--filter", "status=running").stdout.split():
        found[service] = {}
        for key in {"web": ["8000/tcp"], "client": ["9000/tcp"]}.get(service, []):
            out = run("port", service, key.split("/")[0]).stdout.strip()
            found[service][key] = int(out.rsplit(":", 1)[1])
    return found


def _observe(run: Runner) -> dict[str, object]:
    ports = run.ports(run)

    def get(service: str, key: str, path: str) -> str:
        url = f"http://127.0.0.1:{ports[service][key]}{path}"
        return urllib.request.urlopen(url, timeout=10).read().decode()

    def from_client(host: str) -> str:
        return run("exec", "-T", "client", "wget", "-qO-", f"http://{host}:8000/health").stdout

    return {
        "services": sorted(ports),
        "ports": {service: sorted(keys) for service, keys in ports.items()},
        "web index from the host": get("web", "8000/tcp", "/index.html"),
        "client's copy of web's greeting, from the host": get("client", "9000/tcp", "/seen"),
        "web health from client, by name": from_client("web"),
        "web health from client, by alias": from_client("www"),
        "web's row in ps": _health_in_ps(run, "web"),
    }


def _health_in_ps(run: Runner, service: str) -> str:
    """The health `ps` shows for the service's container (docker-compose: `Up (healthy)`)."""
    for line in run("ps").stdout.splitlines():
        if line.split() and service in line.split()[0]:
            found = re.search(r"\((healthy|unhealthy|starting|health: starting)\)", line)
            return found.group(1) if found else f"no health in {line!r}"
    return "no row"


def _busybox_in(kind: str, rootfs: Path, ref: str) -> None:
    engine = open_engine(kind)
    try:
        engine.import_rootfs(rootfs, ref)
    finally:
        engine.close()


def _remove_image(kind: str, ref: str) -> None:
    engine = open_engine(kind)
    try:
        engine.remove_image(ref, force=True)
    finally:
        engine.close()


@pytest.fixture(params=("isobox-native", "isobox-docker", "docker-compose"))
def runner(request: pytest.FixtureRequest, isobox_home: Path, busybox_rootfs: Path
           ) -> Iterator[Runner]:
    kind = "native" if request.param == "isobox-native" else "docker"
    if request.param == "docker-compose" and shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (scripts/install-deps installs it)")
    if kind == "docker" and not docker_available():
        pytest.skip("no Docker daemon answers")
    problem = engine_problem(kind)
    if problem:
        pytest.skip(problem)
    tag = uuid.uuid4().hex[:10]
    base = f"isobox-test/compose-busybox:{tag}"
    project = f"isoboxcompose{tag}"
    _busybox_in(kind, busybox_rootfs, base)
    env = {**os.environ, "BASE": base}
    files = ["-p", project]
    if request.param == "docker-compose":
        run = Runner(["docker-compose", *files], env, _compose_ports, kind, project)
    else:
        run = Runner([sys.executable, "-m", "pytest_isobox.cli", "--engine", kind, "compose",
                      *files], env, _isobox_ports, kind, project)
    try:
        yield run
    finally:
        run("down", "-v", "--rmi", "local", check=False)
        _remove_image(kind, base)
        _check_nothing_left(kind, project)


def _check_nothing_left(kind: str, project: str) -> None:
    engine = open_engine(kind)
    try:
        left = [c.name for c in engine.containers(all=True) if project in c.name]
        left += [n.name for n in engine.networks() if n.name.startswith(project)]
        left += [v for v in engine.volumes() if v.startswith(project)]
        left += [t for i in engine.images() for t in i.tags if t.startswith(project)]
    finally:
        engine.close()
    assert left == [], f"left behind: {left}"


def test_same_project_same_results(runner: Runner) -> None:
    runner("up", "-d")
    assert _observe(runner) == EXPECTED
    runner("down", "-v", "--rmi", "local")
    assert runner.ports(runner) == {}


MORE_EXPECTED = {
    "services": {"app": "running", "helper": "running", "migrate": "exited 0"},
    "a second file merged, extends from a third": "yes | helper from base\n",
    "migrate's entrypoint and command ran first": "migrated\n",
    "env_file, .env through ${VAR:-default}, environment last": "yes fromdotenv environment\n",
    "read-only bind": "bound\nread-only\n",
    "/scratch": "tmpfs\n",
    "mounts": [["bind", "/conf"], ["volume", "/anon"], ["volume", "/state"]],
    "limits": [64 * 1024**2, 500_000_000, 50],
    "7000/tcp exposed": True,
}


def _project_containers(run: Runner) -> dict[str, tuple[str, dict]]:
    """service -> (status, inspect) of the project's containers, by compose's labels."""
    engine = open_engine(run.kind)
    try:
        return {c.labels["com.docker.compose.service"]: (c.status, engine.inspect(c.id))
                for c in engine.containers(all=True)
                if c.labels.get("com.docker.compose.project") == run.project}
    finally:
        engine.close()


def _observe_more(run: Runner) -> dict[str, object]:
    def sh(command: str) -> str:
        return run("exec", "-T", "app", "sh", "-c", command).stdout

    found = _project_containers(run)
    app = found["app"][1]
    return {
        "services": {name: status if status == "running" else
                     f"{status} {info['State']['ExitCode']}"
                     for name, (status, info) in sorted(found.items())},
        "a second file merged, extends from a third":
            sh('echo "$FROM_OVERRIDE |"').rstrip("\n") + " " + run(
                "exec", "-T", "helper", "sh", "-c", 'echo "$ROLE $KEPT"').stdout,
        "migrate's entrypoint and command ran first": sh("cat /state/done"),
        "env_file, .env through ${VAR:-default}, environment last":
            sh('echo "$FROM_ENV_FILE $FROM_DOTENV $OVERRIDDEN"'),
        "read-only bind": sh("cat /conf/setting; touch /conf/x 2>/dev/null && echo writable "
                             "|| echo read-only"),
        "/scratch": sh("awk '$2 == \"/scratch\" {print $3}' /proc/mounts"),
        "mounts": sorted([m["Type"], m["Destination"]] for m in app["Mounts"]
                         if m["Type"] in ("bind", "volume")),
        "limits": [app["HostConfig"][k] for k in ("Memory", "NanoCpus", "PidsLimit")],
        "7000/tcp exposed": "7000/tcp" in (app["Config"].get("ExposedPorts") or {}),
    }


def test_more_of_the_file_same_results(runner: Runner) -> None:
    """depends_on service_completed_successfully, entrypoint, env_file and .env, binds,
    anonymous and tmpfs volumes, limits, expose and profiles: the same on all three."""
    runner.file = DATA / "more" / "compose.yaml"
    runner.more_files = (DATA / "more" / "override.yaml",)
    runner("up", "-d")
    assert _observe_more(runner) == MORE_EXPECTED
    runner("--profile", "extra", "up", "-d")
    assert _project_containers(runner)["extra"][0] == "running"
    runner("--profile", "extra", "down", "-v")
    assert _project_containers(runner) == {}


def test_failed_dependency_stops_up(runner: Runner) -> None:
    """migrate exits 3: up fails and app is never created (compose's condition)."""
    runner.file = DATA / "more" / "compose.yaml"
    runner.env["MIGRATE_CODE"] = "3"
    proc = runner("up", "-d", check=False)
    assert proc.returncode != 0
    assert "app" not in _project_containers(runner)
    assert "migrate" in proc.stderr and "3" in proc.stderr, proc.stderr


def test_build_then_up_build_recreates_and_logs(runner: Runner, tmp_path: Path) -> None:
    """`build` makes the image, `up -d --build` after a change in the context rebuilds it
    and recreates the service's container, `logs SERVICE` shows its output."""
    copy = tmp_path / "project"
    shutil.copytree(DATA, copy)
    runner.file = copy / "compose.yaml"
    runner("build")
    assert any(runner.project in tag for tag in _image_tags(runner.kind))
    runner("up", "-d")
    before = _project_containers(runner)["web"][1]["Id"]
    (copy / "web" / "www" / "index.html").write_text("<p>rebuilt</p>\n")
    runner("up", "-d", "--build")
    rebuilt = _project_containers(runner)["web"][1]["Id"]
    assert rebuilt != before
    port = runner.ports(runner)["web"]["8000/tcp"]
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10).read()
    assert body == b"<p>rebuilt</p>\n"
    assert re.search(r"^web\S*\s+\| greeting written$", _logs(runner, "web"), re.MULTILINE)
    runner("up", "-d")  # nothing changed: the same container
    assert _project_containers(runner)["web"][1]["Id"] == rebuilt


def test_logs_follow_ends_with_the_container(runner: Runner) -> None:
    runner.file = DATA / "more" / "compose.yaml"
    runner("up", "-d")
    out = _logs(runner, "-f", "migrate")  # returns: migrate has exited
    assert re.search(r"^migrate\S*\s+\| migrating$", out, re.MULTILINE), out


def _logs(runner: Runner, *args: str) -> str:
    """`logs` output without docker-compose's colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", runner("logs", *args).stdout)


def _image_tags(kind: str) -> list[str]:
    engine = open_engine(kind)
    try:
        return [tag for image in engine.images() for tag in image.tags]
    finally:
        engine.close()


@pytest.mark.skipif(not have_registry(), reason="docker-registry is not installed")
def test_missing_image_is_pulled(runner: Runner, registry: Registry, docker_config: Path,
                                 busybox_rootfs: Path, tmp_path: Path) -> None:
    """`image:` not on the engine: pulled from its registry (docker-registry on loopback)."""
    from pytest_isobox.images.store import ImageStore

    ref = f"{registry.netloc}/isobox/compose-pull:{runner.project}"
    store = ImageStore(tmp_path / "pusher")
    store.tag(store.import_rootfs(busybox_rootfs, None), ref)
    store.push(ref)
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  pulled:\n    image: {ref}\n    command: [sleep, '600']\n")
    runner.file = tmp_path / "compose.yaml"
    runner.env.pop("ISOBOX_OFFLINE", None)
    runner.env["DOCKER_CONFIG"] = str(docker_config)
    assert ref not in _image_tags(runner.kind)
    try:
        runner("up", "-d")
        assert _project_containers(runner)["pulled"][0] == "running"
        assert ref in _image_tags(runner.kind)
        runner("down")
    finally:
        with contextlib.suppress(ImageNotFound):  # (not pulled: the assertion above says)
            _remove_image(runner.kind, ref)


def test_up_wait_returns_once_healthy(runner: Runner) -> None:
    """`up -d --wait web`: returns when web's State.Health is healthy (compose v2's flag;
    docker-compose 1.29 has none)."""
    if runner.argv[0] == "docker-compose":
        pytest.skip("docker-compose 1.29 has no up --wait")
    runner("up", "-d", "--wait", "web")
    assert _health_in_ps(runner, "web") == "healthy"
    assert sorted(_project_containers(runner)) == ["web"]


def test_isobox_compose_broken_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: x\n    ports: 80\n")
    proc = subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "compose", "config"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr == (f"isobox compose: {tmp_path}/compose.yaml: services.web.ports: "
                           "80 is not of type 'array'\n")


def test_isobox_compose_config_is_the_merged_model(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: app:${TAG:-1}\n")
    (tmp_path / "more.yaml").write_text("services:\n  web:\n    environment: [A=1]\n")
    proc = subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "compose", "-f",
                           "compose.yaml", "-f", "more.yaml", "config"], cwd=tmp_path,
                          capture_output=True, text=True, check=True,
                          env={k: v for k, v in os.environ.items() if k != "TAG"})
    assert proc.stdout == "services:\n  web:\n    image: app:1\n    environment:\n      A: '1'\n"


@pytest.mark.parametrize("kind", ["native", "docker"])
def test_up_in_the_foreground_streams_logs_until_interrupted(isobox_home: Path,
                                                            busybox_rootfs: Path,
                                                            kind: str) -> None:
    """`up` without -d: the services' output prefixed by service, Ctrl-C takes it all down."""
    import signal

    if engine_problem(kind):
        pytest.skip(engine_problem(kind))
    base, project = "isobox-test/compose-busybox:fg", f"isoboxcompose{uuid.uuid4().hex[:10]}"
    _busybox_in(kind, busybox_rootfs, base)
    (isobox_home.parent / "compose.yaml").write_text(
        "services:\n  talker:\n    image: ${BASE}\n"
        "    command: [sh, -c, 'echo talking; exec sleep 600']\n")
    proc = subprocess.Popen([sys.executable, "-m", "pytest_isobox.cli", "--engine", kind,
                             "compose", "-p", project, "up"], cwd=isobox_home.parent, env={**os.environ, "BASE": base},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the first log line is relayed
        assert line == "talker  | talking\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _check_nothing_left(kind, project)
    _remove_image(kind, base)
