"""A remote Docker host over TLS: the address tests get, errors, several hosts at once.

The "remote" hosts are dockerd instances in network namespaces of their own (remote_daemon.py):
from here only their veth address is reachable, as with another machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_isobox.docker.address import DaemonAddress, TLSFiles
from pytest_isobox.docker.client import DockerClient
from pytest_isobox.engine import EngineUnavailable
from tests.docker import remote_daemon
from tests.docker.remote_daemon import RemoteDaemon
from tests.plugin.conftest import base_conftest


def test_wrong_ca_is_a_one_line_error_naming_the_address(remote_daemon_host: RemoteDaemon,
                                                         tmp_path: Path) -> None:
    remote_daemon.make_ca(tmp_path, "some other CA")
    certs = remote_daemon_host.client_certs
    tls = TLSFiles(True, str(tmp_path / "ca.pem"), str(certs / "cert.pem"), str(certs / "key.pem"))
    with pytest.raises(EngineUnavailable) as caught:
        DockerClient(DaemonAddress(remote_daemon_host.url, "DOCKER_HOST", tls))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"no Docker daemon at {remote_daemon_host.url} (TLS, from "
                              "DOCKER_HOST): the daemon's certificate is not trusted"), message


def test_without_client_certificate_the_daemon_refuses(remote_daemon_host: RemoteDaemon) -> None:
    tls = TLSFiles(True, str(remote_daemon_host.client_certs / "ca.pem"))
    with pytest.raises(EngineUnavailable, match=f"at {remote_daemon_host.url} .*"):
        DockerClient(DaemonAddress(remote_daemon_host.url, "DOCKER_HOST", tls))


def test_tls_daemon_from_environment(remote_daemon_host: RemoteDaemon,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in remote_daemon_host.env().items():
        monkeypatch.setenv(key, value)
    client = DockerClient()
    try:
        assert client.address.remote_host == remote_daemon_host.ip
        assert client.get_json("/info")["ID"]
    finally:
        client.close()


_PROJECT_TEST = """
    import json, os, urllib.request

    def _check(web, n):
        host, port = web.get_addr("8000/tcp")
        body = urllib.request.urlopen(f"http://{host}:{port}/passwd", timeout=10).read()
        assert body.startswith(b"root:")
        with open(os.environ["RECORD"], "a") as f:
            f.write(json.dumps([os.environ.get("PYTEST_XDIST_WORKER", "master"), host]) + "\\n")
"""


def _project(pytester: pytest.Pytester, busybox_rootfs: Path, tests: int) -> None:
    pytester.makeini("[pytest]\nisobox_engine = docker\n")
    pytester.makeconftest(base_conftest(busybox_rootfs, """
        web = container(image="{base}", ports=["8000/tcp"], scope="function",
                        command=["httpd", "-f", "-p", "8000", "-h", "/etc"],
                        ready=wait.http(8000, "/passwd", body="root"))
    """))
    body = textwrap.dedent(_PROJECT_TEST) + "".join(
        f"\ndef test_{n}(web):\n    _check(web, {n})\n" for n in range(tests))
    pytester.makepyfile(test_it=body)


def test_get_addr_is_the_remote_host_and_readiness_runs_here(
        pytester: pytest.Pytester, busybox_rootfs: Path, remote_daemon_host: RemoteDaemon,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in remote_daemon_host.env().items():
        monkeypatch.setenv(key, value)
    record = tmp_path / "record"
    monkeypatch.setenv("RECORD", str(record))
    _project(pytester, busybox_rootfs, 1)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert record.read_text().split() == ['["master",', f'"{remote_daemon_host.ip}"]']


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2")
def test_xdist_workers_spread_over_several_hosts(
        pytester: pytest.Pytester, busybox_rootfs: Path,
        remote_daemons: list[RemoteDaemon], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    first = remote_daemons[0]
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(first.client_certs))  # one CA for both
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    record = tmp_path / "record"
    monkeypatch.setenv("RECORD", str(record))
    _project(pytester, busybox_rootfs, 8)
    hosts = ",".join(d.url for d in remote_daemons)
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "4",
                                f"--isobox-docker-hosts={hosts}")
    result.assert_outcomes(passed=8)
    import json

    seen = [json.loads(line) for line in record.read_text().splitlines()]
    by_worker: dict[str, set[str]] = {}
    for worker, host in seen:
        by_worker.setdefault(worker, set()).add(host)
    assert all(len(h) == 1 for h in by_worker.values()), by_worker  # one host per worker
    assert {h for hs in by_worker.values() for h in hs} == {d.ip for d in remote_daemons}


_SHARED_TEST = """
    import json, os

    def _where(web, shared, n):
        host, _ = web.get_addr("8000/tcp")
        shared_host, _ = shared.get_addr("8000/tcp")
        body = urllib.request.urlopen(f"http://{shared_host}:{_}/passwd", timeout=10).read()
        assert body.startswith(b"root:")
        with open(os.environ["RECORD"], "a") as f:
            f.write(json.dumps([os.environ.get("PYTEST_XDIST_WORKER", "master"), host,
                                shared_host, shared.id]) + "\\n")
"""


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2")
def test_shared_containers_live_on_the_first_host(
        pytester: pytest.Pytester, busybox_rootfs: Path,
        remote_daemons: list[RemoteDaemon], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """Every worker's own containers on its host; the shared one (its image carried over
    from whichever worker made it) once, on the first host, for all; nothing left after."""
    pytest.importorskip("xdist")
    first = remote_daemons[0]
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(first.client_certs))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    record = tmp_path / "record"
    monkeypatch.setenv("RECORD", str(record))
    hosts = ",".join(d.url for d in remote_daemons)
    pytester.makeini(f"[pytest]\nisobox_engine = docker\nisobox_docker_hosts = {hosts}\n")
    pytester.makeconftest(base_conftest(busybox_rootfs, """
        serve = dict(image="{base}", ports=["8000/tcp"],
                     command=["httpd", "-f", "-p", "8000", "-h", "/etc"],
                     ready=wait.http(8000, "/passwd", body="root"))
        web = container(**serve, scope="function")
        shared = container(**serve, scope="session", shared=True)
    """))
    body = textwrap.dedent(_PROJECT_TEST) + textwrap.dedent(_SHARED_TEST) + "".join(
        f"\ndef test_{n}(web, shared):\n    _where(web, shared, {n})\n" for n in range(8))
    pytester.makepyfile(test_it=body)
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "4")  # hosts from the ini file
    result.assert_outcomes(passed=8)
    import json

    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert {own for _, own, _, _ in seen} == {d.ip for d in remote_daemons}
    assert {shared_host for _, _, shared_host, _ in seen} == {first.ip}
    assert len({shared_id for *_, shared_id in seen}) == 1
    assert len({worker for worker, *_ in seen}) > 1
    for daemon in remote_daemons:
        tls = TLSFiles(True, str(daemon.client_certs / "ca.pem"),
                       str(daemon.client_certs / "cert.pem"), str(daemon.client_certs / "key.pem"))
        client = DockerClient(DaemonAddress(daemon.url, "test", tls))
        try:
            left = client.get_json("/containers/json", {"all": True})
        finally:
            client.close()
        assert [c["Names"] for c in left if "isobox-" in str(c["Names"])] == [], daemon.url


@pytest.fixture
def sshd_to_remote(remote_daemon_host: RemoteDaemon, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """sshd on loopback whose sessions reach the remote daemon (SetEnv DOCKER_HOST...), and
    an `ssh` first in PATH that uses this test's key and known-hosts: ssh://root@127.0.0.1."""
    import subprocess
    import threading

    if shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server is not installed")
    keys = tmp_path / "ssh"
    keys.mkdir(mode=0o700)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                       check=True)
    shutil.copy(keys / "client.pub", keys / "authorized_keys")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = " ".join(f"{k}={v}" for k, v in remote_daemon_host.env().items())
    (keys / "sshd_config").write_text(textwrap.dedent(f"""
        ListenAddress 127.0.0.1
        Port {port}
        HostKey {keys}/host
        AuthorizedKeysFile {keys}/authorized_keys
        PidFile {keys}/sshd.pid
        PermitRootLogin prohibit-password
        PasswordAuthentication no
        UsePAM no
        StrictModes no
        SetEnv {env}
    """))
    (keys / "ssh_config").write_text(
        f"Host *\n  IdentityFile {keys}/client\n  UserKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking no\n  LogLevel ERROR\n")
    wrapper = tmp_path / "bin" / "ssh"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {keys}/ssh_config "$@"\n')
    wrapper.chmod(0o755)
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e",
                             "-f", str(keys / "sshd_config")],
                            stderr=subprocess.PIPE, text=True)
    listening = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Server listening" in line:
                listening.set()
        listening.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert listening.wait(30) and proc.poll() is None, "sshd did not start"
        monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
        yield f"ssh://root@127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ssh_host_through_docker_system_dial_stdio(sshd_to_remote: str,
                                                   busybox_rootfs: Path) -> None:
    from pytest_isobox.docker.engine import DockerEngine
    from pytest_isobox.engine import ContainerSpec

    engine = DockerEngine(sshd_to_remote)
    ref = f"isobox-test/ssh-busybox:{engine.session[:8]}"
    try:
        assert engine.client.address.scheme == "ssh"
        engine.import_rootfs(busybox_rootfs, ref)
        state = engine.run(ContainerSpec(image=ref, command=["sleep", "60"]))
        result = engine.exec(state.id, ["sh", "-c", "echo over ssh"])
        assert (result.exit_code, result.stdout) == (0, b"over ssh\n")
        engine.remove(state.id, force=True)
    finally:
        engine.remove_image(ref, force=True)
        engine.close()


def test_ssh_failure_names_the_address_and_ssh_message(tmp_path: Path) -> None:
    with socket_free_port() as port, pytest.raises(
            EngineUnavailable, match=rf"ssh://nobody@127.0.0.1:{port} .*ssh exited with "
                                     r"status 255"):
        DockerClient(f"ssh://nobody@127.0.0.1:{port}")


@contextlib.contextmanager
def socket_free_port() -> Iterator[int]:
    """A loopback port nothing listens on (held bound, not listening, during the block)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def _cli(*args: str, env: dict[str, str]) -> str:
    import subprocess

    done = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs Docker's CLI")
def test_contexts_made_by_dockers_cli(remote_daemon_host: RemoteDaemon, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A context `docker context create` writes (meta.json, TLS files in its store) is the
    daemon isobox reaches: by DOCKER_CONTEXT, then as `docker context use`'s currentContext;
    the same daemon as Docker's CLI reaches with it."""
    from pytest_isobox.docker.engine import DockerEngine

    for key in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH",
                "DOCKER_TLS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "config"))
    certs = remote_daemon_host.client_certs
    env = dict(os.environ)
    _cli("context", "create", "far", "--docker",
         f"host={remote_daemon_host.url},ca={certs}/ca.pem,cert={certs}/cert.pem,"
         f"key={certs}/key.pem", env=env)
    cli_id = _cli("--context", "far", "info", "--format", "{{.ID}}", env=env)
    monkeypatch.setenv("DOCKER_CONTEXT", "far")
    engine = DockerEngine()
    try:
        address = engine.client.address
        assert (address.url, address.source) == (remote_daemon_host.url,
                                               "context 'far' named by DOCKER_CONTEXT")
        assert address.tls is not None and address.tls.verify and address.tls.cert
        assert engine.client.get_json("/info")["ID"] == cli_id
    finally:
        engine.close()
    monkeypatch.delenv("DOCKER_CONTEXT")
    _cli("context", "use", "far", env=dict(os.environ))
    engine = DockerEngine()
    try:
        assert engine.client.address.source == ("context 'far' named by currentContext in "
                                                f"{tmp_path}/config/config.json")
        assert engine.client.get_json("/info")["ID"] == cli_id
    finally:
        engine.close()
    _cli("context", "use", "default", env=dict(os.environ))
    monkeypatch.setenv("DOCKER_CONTEXT", "gone")
    with pytest.raises(EngineUnavailable, match=r"^Docker context 'gone' \(from DOCKER_CONTEXT"
                                                r"\) does not exist"):
        DockerEngine()


def test_rootless_socket_when_the_default_is_absent(remote_daemon_host: RemoteDaemon,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """No /var/run/docker.sock (here: the default moved to a path that does not exist) and a
    daemon on $XDG_RUNTIME_DIR/docker.sock, as rootless Docker has: that daemon is used."""
    import pytest_isobox.docker.address as address_module
    from pytest_isobox.docker.engine import DockerEngine

    for key in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-config"))
    monkeypatch.setattr(address_module, "DEFAULT_SOCKET", str(tmp_path / "absent.sock"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(remote_daemon_host.socket_path.parent))
    tls = TLSFiles(True, *(str(remote_daemon_host.client_certs / n)
                           for n in ("ca.pem", "cert.pem", "key.pem")))
    over_tcp = DockerClient(DaemonAddress(remote_daemon_host.url, "test", tls))
    try:
        daemon_id = over_tcp.get_json("/info")["ID"]
    finally:
        over_tcp.close()
    engine = DockerEngine()
    try:
        assert engine.client.address.url == f"unix://{remote_daemon_host.socket_path}"
        assert "rootless" in engine.client.address.source
        assert engine.client.get_json("/info")["ID"] == daemon_id
    finally:
        engine.close()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # neither socket: the default named
    with pytest.raises(EngineUnavailable, match=rf"^no Docker daemon at unix://{tmp_path}/"
                                                r"absent.sock \(from the default socket\): "):
        DockerEngine()
