"""Finding the daemon as Docker's CLI does: DOCKER_HOST, TLS variables, contexts, sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_isobox.docker.address import context_id, resolve_address
from pytest_isobox.docker.transport import ssh_command
from pytest_isobox.engine import EngineUnavailable


def _certs(where: Path, *names: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for name in names:
        (where / name).write_text("pem")
    return where


def _context(config: Path, name: str, host: str, *, skip_verify: bool = False,
             tls: tuple[str, ...] = ()) -> None:
    meta = config / "contexts" / "meta" / context_id(name)
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({
        "Name": name, "Metadata": {},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}}}))
    if tls:
        _certs(config / "contexts" / "tls" / context_id(name) / "docker", *tls)


def test_docker_host_forms() -> None:
    env = {"HOME": "/nonexistent"}
    assert resolve_address("/run/x.sock", env).url == "unix:///run/x.sock"
    tcp = resolve_address(None, {**env, "DOCKER_HOST": "tcp://10.1.2.3"})
    assert (tcp.url, tcp.tls, tcp.source, tcp.remote_host) == (
        "tcp://10.1.2.3:2375", None, "DOCKER_HOST", "10.1.2.3")
    assert resolve_address("tcp://127.0.0.1:2375", env).remote_host is None
    assert resolve_address("tcp://localhost:1", env).remote_host is None
    ssh = resolve_address("ssh://me@build-host:2222", env)
    assert ssh.remote_host == "build-host"
    assert ssh_command(ssh) == ["ssh", "-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30",
                                "-l", "me", "-p", "2222", "--", "build-host",
                                "docker system dial-stdio"]


def test_bad_addresses_name_the_value_and_source() -> None:
    with pytest.raises(EngineUnavailable, match=r"'npipe:////./pipe/x' \(from DOCKER_HOST\): "
                                                r"unsupported scheme 'npipe'"):
        resolve_address(None, {"DOCKER_HOST": "npipe:////./pipe/x"})
    with pytest.raises(EngineUnavailable, match=r"'tcp://h:x' \(from the engine option\): bad"):
        resolve_address("tcp://h:x", {})


def test_tls_from_environment(tmp_path: Path) -> None:
    certs = _certs(tmp_path / "certs", "ca.pem", "cert.pem", "key.pem")
    env = {"DOCKER_HOST": "tcp://10.0.0.2", "DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": str(certs)}
    address = resolve_address(None, env)
    assert address.url == "tcp://10.0.0.2:2376"  # TLS port by default
    assert address.tls is not None and address.tls.verify
    assert (address.tls.ca, address.tls.cert, address.tls.key) == (
        str(certs / "ca.pem"), str(certs / "cert.pem"), str(certs / "key.pem"))
    assert address.describe() == "tcp://10.0.0.2:2376 (TLS, from DOCKER_HOST)"
    (certs / "ca.pem").unlink()
    with pytest.raises(EngineUnavailable, match=f"{certs}/ca.pem .from DOCKER_CERT_PATH. is "
                                                "missing"):
        resolve_address(None, env)
    unverified = resolve_address(None, {**env, "DOCKER_TLS_VERIFY": "", "DOCKER_TLS": "1"})
    assert unverified.tls is not None and not unverified.tls.verify and unverified.tls.ca is None
    (certs / "key.pem").unlink()
    with pytest.raises(EngineUnavailable, match="key.pem .from DOCKER_CERT_PATH. is missing"):
        resolve_address(None, {**env, "DOCKER_TLS_VERIFY": "", "DOCKER_TLS": "1"})


def test_tls_default_cert_path_is_the_config_dir(tmp_path: Path) -> None:
    _certs(tmp_path / ".docker", "ca.pem")
    address = resolve_address("tcp://10.0.0.2:2376", {"HOME": str(tmp_path),
                                                       "DOCKER_TLS_VERIFY": "1"})
    assert address.tls is not None and address.tls.ca == str(tmp_path / ".docker/ca.pem")
    assert address.tls.cert is None


def test_contexts(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    _context(config, "remote", "tcp://10.9.9.9:2376", tls=("ca.pem", "cert.pem", "key.pem"))
    _context(config, "insecure", "tcp://10.9.9.8:2376", skip_verify=True)
    _context(config, "plain", "unix:///run/other.sock")
    env = {"DOCKER_CONFIG": str(config)}
    remote = resolve_address(None, {**env, "DOCKER_CONTEXT": "remote"})
    assert remote.url == "tcp://10.9.9.9:2376" and remote.source == (
        "context 'remote' named by DOCKER_CONTEXT")
    assert remote.tls is not None and remote.tls.verify
    assert remote.tls.ca == str(config / "contexts/tls" / context_id("remote") / "docker/ca.pem")
    insecure = resolve_address(None, {**env, "DOCKER_CONTEXT": "insecure"})
    assert insecure.tls is not None and not insecure.tls.verify
    (config / "config.json").write_text(json.dumps({"currentContext": "plain"}))
    current = resolve_address(None, env)
    assert current.url == "unix:///run/other.sock"
    assert current.describe() == ("unix:///run/other.sock (from context 'plain' named by "
                                  f"currentContext in {config}/config.json)")
    # DOCKER_HOST wins over the current context, as with the CLI; DOCKER_CONTEXT over config
    assert resolve_address(None, {**env, "DOCKER_HOST": "tcp://h:1"}).url == "tcp://h:1"
    assert resolve_address(None, {**env, "DOCKER_CONTEXT": "remote"}).url.startswith("tcp://10.9")
    with pytest.raises(EngineUnavailable, match=r"context 'gone' \(from DOCKER_CONTEXT\) does "
                                                r"not exist: no .*meta\.json"):
        resolve_address(None, {**env, "DOCKER_CONTEXT": "gone"})
    (config / "config.json").write_text("{not json")
    with pytest.raises(EngineUnavailable, match="config.json failed"):
        resolve_address(None, env)


def test_default_and_rootless_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_isobox.docker.address as address_module

    monkeypatch.setattr(address_module, "DEFAULT_SOCKET", str(tmp_path / "absent.sock"))
    (tmp_path / "docker.sock").touch()
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    found = resolve_address(None, env)
    assert found.url == f"unix://{tmp_path}/docker.sock" and "rootless" in found.source
    (tmp_path / "absent.sock").touch()
    assert resolve_address(None, env).url == f"unix://{tmp_path}/absent.sock"
