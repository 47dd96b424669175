"""contrib/systemd's units and fd:// socket activation (the socket made as systemd makes it,
passed as fd 3 with LISTEN_FDS/LISTEN_PID), and TLS with client certificates required."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.conftest import SERVE_IMAGE, _wait_listening

docker = pytest.importorskip("docker")
REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "contrib" / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_the_units_are_valid_and_agree(tmp_path: Path) -> None:
    socket_unit, service = _unit("isobox.socket"), _unit("isobox.service")
    assert socket_unit["Socket"]["ListenStream"] == "/run/isobox/docker.sock"
    assert (socket_unit["Socket"]["SocketMode"], socket_unit["Socket"]["SocketGroup"]) \
        == ("0660", "isobox")
    assert service["Service"]["ExecStart"].endswith(" serve -H fd://")
    assert service["Unit"]["Requires"] == "isobox.socket"
    if not shutil.which("systemd-analyze"):
        pytest.skip("no systemd-analyze")
    # verified with ExecStart pointing at this checkout's server (the installed path may be
    # missing here); systemd-analyze checks every directive and the unit's references
    for name in ("isobox.socket", "isobox.service"):
        text = (UNITS / name).read_text().replace(
            "/usr/local/bin/isobox serve", f"{sys.executable} -m pytest_isobox.cli serve")
        (tmp_path / name).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "isobox.socket"),
                           str(tmp_path / "isobox.service")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _activated(tmp_path: Path, listening: socket.socket, *, listen_pid: str = "$$"
               ) -> subprocess.Popen:
    """The server as systemd starts it: the socket on fd 3, LISTEN_PID its own pid."""
    command = _unit("isobox.service")["Service"]["ExecStart"].split()
    args = command[command.index("serve") + 1:]
    log = (tmp_path / "activated.log").open("wb")
    script = (f'exec 3<&0 0</dev/null; LISTEN_PID={listen_pid} LISTEN_FDS=1 '
              f'LISTEN_FDNAMES=isobox.socket exec "$@"')
    try:
        return subprocess.Popen(["sh", "-c", script, "sh", sys.executable, "-m",
                                 "pytest_isobox.cli", "serve", *args],
                                stdin=listening, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def test_fd_activation_serves_the_passed_socket(tmp_path: Path, isobox_home: Path,
                                                busybox_rootfs: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (the native engine, rootful)")
    subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "import", str(busybox_rootfs),
                    SERVE_IMAGE], check=True, capture_output=True)
    path = tmp_path / "activated.sock"
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(path))
    os.chmod(path, 0o660)
    listening.listen(16)
    proc = _activated(tmp_path, listening)
    listening.close()  # the server holds it now, as systemd would keep its own copy
    try:
        _wait_listening(proc, tmp_path / "activated.log")
        assert "API listening on fd://3" in (tmp_path / "activated.log").read_text()
        client = docker.DockerClient(base_url=f"unix://{path}", timeout=60)
        assert client.ping()
        assert client.containers.run(SERVE_IMAGE, ["echo", "activated"], remove=True) \
            == b"activated\n"
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert path.exists()  # the socket is systemd's: the server never unlinks it


def test_fd_activation_for_another_process_is_refused(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(str(tmp_path / "x.sock"))
        listening.listen(1)
        proc = _activated(tmp_path, listening, listen_pid="1")
        assert proc.wait(timeout=60) == 2
    text = (tmp_path / "activated.log").read_text().strip()
    assert text == ("isobox serve: -H fd://: no sockets were passed to this process "
                    "(LISTEN_PID is not our pid; start through systemd socket activation)")


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """A CA, the server's certificate for 127.0.0.1 and a client certificate, made here."""
    from tests.registry.servers import make_ca, make_client_cert

    if not shutil.which("openssl"):
        pytest.skip("no openssl")
    folder = tmp_path / "certs"
    ca, cert, key = make_ca(folder)
    client_cert, client_key = make_client_cert(folder, ca, folder / "ca.key")
    return {"ca": ca, "cert": cert, "key": key, "client_cert": client_cert,
            "client_key": client_key}


def test_tls_with_client_certificates_required(tmp_path: Path, isobox_home: Path,
                                               busybox_rootfs: Path,
                                               tls_files: dict[str, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (the native engine, rootful)")
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests would trust these over
        monkeypatch.delenv(name, raising=False)            # docker-py's ca_cert
    from tests.registry.servers import free_port

    subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "import", str(busybox_rootfs),
                    SERVE_IMAGE], check=True, capture_output=True)
    port = free_port()
    log_path = tmp_path / "tls.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pytest_isobox.server", "-H",
                                 f"tcp://127.0.0.1:{port}", "--home", str(isobox_home),
                                 "--tlsverify", "--tlscacert", str(tls_files["ca"]),
                                 "--tlscert", str(tls_files["cert"]),
                                 "--tlskey", str(tls_files["key"])],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, log_path)
        tls = docker.tls.TLSConfig(client_cert=(str(tls_files["client_cert"]),
                                                str(tls_files["client_key"])),
                                   ca_cert=str(tls_files["ca"]), verify=True)
        client = docker.DockerClient(base_url=f"https://127.0.0.1:{port}", tls=tls, timeout=60)
        assert client.version()["ApiVersion"]
        assert client.containers.run(SERVE_IMAGE, ["echo", "over-tls"], remove=True) \
            == b"over-tls\n"
        client.close()
        if shutil.which("docker"):
            env = {**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{port}",
                   "DOCKER_TLS_VERIFY": "1", "DOCKER_CONFIG": "/nonexistent-isobox"}
            done = subprocess.run(["docker", "--tlscacert", str(tls_files["ca"]), "--tlscert",
                                   str(tls_files["client_cert"]), "--tlskey",
                                   str(tls_files["client_key"]), "run", "--rm", SERVE_IMAGE,
                                   "echo", "cli-tls"], env=env, capture_output=True,
                                  text=True, timeout=60, check=False)
            assert (done.returncode, done.stdout) == (0, "cli-tls\n"), done.stderr
        # no client certificate: the handshake is refused, nothing is answered
        context = ssl.create_default_context(cafile=str(tls_files["ca"]))
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)), \
                socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            if not conn.recv(1024):
                raise ConnectionResetError("closed without an answer")
        # plain http on the TLS port gets no API either
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            raw.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = raw.recv(1024)
            except ConnectionResetError:
                answer = b""
            assert b"OK" not in answer
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_tls_off_loopback_needs_every_flag() -> None:
    from pytest_isobox.engine import InvalidSpec
    from pytest_isobox.server.listeners import TlsOptions, check_tcp_allowed

    full = TlsOptions(verify=True, cacert="ca.pem", cert="cert.pem", key="key.pem")
    check_tcp_allowed("tcp://10.1.2.3:2376", full)  # allowed with client certificates
    check_tcp_allowed("tcp://127.0.0.1:2375", TlsOptions())  # loopback: no TLS needed
    for partial in (TlsOptions(cert="c", key="k"), TlsOptions(verify=True, cert="c", key="k")):
        with pytest.raises(InvalidSpec, match="needs --tlsverify --tlscacert"):
            check_tcp_allowed("tcp://10.1.2.3:2376", partial)
