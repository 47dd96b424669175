"""A remote Docker host over TLS: the address tests get, errors, several hosts at once.

The "remote" hosts are dockerd instances in network namespaces of their own (remote_daemon.py):
from here only their veth address is reachable, as with another machine.
"""

from __future__ import annotations

import shutil
import textwrap
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
