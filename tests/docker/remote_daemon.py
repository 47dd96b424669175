"""A "remote" Docker host for tests: dockerd in a network namespace of its own, TLS on TCP.

The namespace (tests/netns.py) has a veth to the host on a /30 no route of the host covers, a
bridge of its own for containers, and a dockerd (with the containerd it supervises) that listens only on
tcp://<veth ip>:2376 with client-certificate TLS made here by openssl. From the test's side it
is another machine: its loopback and its containers' addresses are unreachable, only the veth
address is. `stop` removes everything: processes (by PID), leftover mounts, veth, netns, files.
"""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests import netns
from tests.netns import run

PORT = 2376
_READY_LINE = "API listen on"


@dataclass
class RemoteDaemon:
    netns: str
    veth: str
    ip: str
    root: Path
    proc: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"tcp://{self.ip}:{PORT}"

    @property
    def client_certs(self) -> Path:
        return self.root / "client"

    def env(self) -> dict[str, str]:
        """What makes Docker's CLI (and isobox) talk to this daemon."""
        return {"DOCKER_HOST": self.url, "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": str(self.client_certs)}


def make_ca(root: Path, name: str = "isobox test CA") -> None:
    """A CA key and certificate in root (ca-key.pem, ca.pem)."""
    run("openssl", "req", "-x509", *_EC, "-keyout", str(root / "ca-key.pem"),
         "-out", str(root / "ca.pem"), "-days", "2", "-subj", f"/CN={name}")


_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _make_certs(root: Path, ip: str, ca_from: Path | None) -> None:
    """A server certificate for `ip` and a client certificate, as `docker` expects, from a
    new CA or the one of `ca_from` (daemons of one CA take the same client certificate)."""
    server, client = root / "server", root / "client"
    server.mkdir()
    if ca_from is not None:
        shutil.copy(ca_from / "ca-key.pem", root / "ca-key.pem")
        shutil.copytree(ca_from / "client", client)
        shutil.copy(ca_from / "server" / "ca.pem", server / "ca.pem")
    else:
        client.mkdir()
        make_ca(root)
        shutil.move(root / "ca.pem", server / "ca.pem")
        shutil.copy(server / "ca.pem", client / "ca.pem")
    ec = _EC
    pairs = [(server, ip, f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth")]
    if ca_from is None:
        pairs.append((client, "isobox-client", "extendedKeyUsage=clientAuth"))
    for where, cn, ext in pairs:
        (root / "ext.cnf").write_text(ext + "\n")
        run("openssl", "req", *ec, "-keyout", str(where / "key.pem"),
             "-out", str(root / "req.csr"), "-subj", f"/CN={cn}")
        run("openssl", "x509", "-req", "-in", str(root / "req.csr"),
             "-CA", str(server / "ca.pem"), "-CAkey", str(root / "ca-key.pem"),
             "-CAcreateserial", "-days", "2", "-extfile", str(root / "ext.cnf"),
             "-out", str(where / "cert.pem"))
    for key in (server / "key.pem", client / "key.pem"):
        key.chmod(0o600)


def start(count: int = 1, timeout: float = 90.0) -> list[RemoteDaemon]:
    """Start `count` remote daemons (in parallel, one CA for all); on any failure all are
    stopped again."""
    daemons: list[RemoteDaemon] = []
    try:
        for net in netns.free_subnets(count):
            daemons.append(_prepare(net, daemons[0].root if daemons else None))
        for daemon in daemons:
            _launch(daemon)
        deadline = time.monotonic() + timeout
        for daemon in daemons:
            _wait_ready(daemon, deadline)
    except BaseException:
        for daemon in daemons:
            stop(daemon)
        raise
    return daemons


def _prepare(net: ipaddress.IPv4Network, ca_from: Path | None) -> RemoteDaemon:
    hosts = list(net.hosts())
    bridge_ip = f"{hosts[128]}/25"  # .129/25: containers, inside the namespace only
    host = netns.make(net, name="isobox-rd", veth="ibrd")  # .1 and .2: the /30 at the start
    root = Path(tempfile.mkdtemp(prefix="isobox-rd-", dir="/tmp"))
    daemon = RemoteDaemon(netns=host.netns, veth=host.veth, ip=host.ip, root=root)
    try:
        inside = ("ip", "netns", "exec", daemon.netns)
        run(*inside, "ip", "link", "add", "isobr0", "type", "bridge")
        run(*inside, "ip", "addr", "add", bridge_ip, "dev", "isobr0")
        run(*inside, "ip", "link", "set", "isobr0", "up")
        _make_certs(root, host.ip, ca_from)
        (root / "daemon.json").write_text("{}")
    except BaseException:
        stop(daemon)
        raise
    return daemon


def _launch(daemon: RemoteDaemon) -> None:
    root, server = daemon.root, daemon.root / "server"
    dockerd = ["dockerd", "--config-file", str(root / "daemon.json"),
               "--tlsverify", "--tlscacert", str(server / "ca.pem"),
               "--tlscert", str(server / "cert.pem"), "--tlskey", str(server / "key.pem"),
               "-H", daemon.url, "--data-root", str(root / "d"), "--exec-root", str(root / "e"),
               "--pidfile", str(root / "docker.pid"), "--bridge", "isobr0"]
    # A private mount namespace (mounts die with it) with the sysfs of the new network
    # namespace, but the host's cgroup hierarchy (`ip netns exec` would hide it). Each step
    # execs the next, so the PID we get is dockerd's.
    (root / "cg").mkdir()
    inner = (f"mount -t sysfs sysfs /sys && mount --rbind {root}/cg /sys/fs/cgroup && "
             f"umount -l {root}/cg && exec {shlex.join(dockerd)}")
    outer = (f"mount --rbind /sys/fs/cgroup {root}/cg && exec nsenter "
             f"--net=/run/netns/{daemon.netns} sh -c {shlex.quote(inner)}")
    argv = ["unshare", "--mount", "--propagation", "slave", "sh", "-c", outer]
    daemon.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")
    ready = threading.Event()
    daemon.log.clear()

    def drain() -> None:  # keep reading so dockerd never blocks on its log
        assert daemon.proc is not None and daemon.proc.stdout is not None
        for line in daemon.proc.stdout:
            daemon.log.append(line.rstrip())
            if _READY_LINE in line:
                ready.set()
        ready.set()  # exited

    threading.Thread(target=drain, daemon=True).start()
    daemon._ready = ready  # type: ignore[attr-defined]


def _wait_ready(daemon: RemoteDaemon, deadline: float) -> None:
    ready: threading.Event = daemon._ready  # type: ignore[attr-defined]
    assert daemon.proc is not None
    if not ready.wait(max(0.0, deadline - time.monotonic())) or daemon.proc.poll() is not None:
        tail = "\n".join(daemon.log[-15:])
        raise RuntimeError(f"dockerd in {daemon.netns} did not listen on {daemon.url}:\n{tail}")


def stop(daemon: RemoteDaemon) -> None:
    """Stop dockerd (it stops its containers and containerd), end what is left in the
    namespace by PID, unmount leftovers under its directories, remove veth, netns, files."""
    proc = daemon.proc
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    netns.end_processes(daemon.netns)  # containerd, shims, containers of this namespace only
    _unmount_under(daemon.root)
    netns.remove_links(daemon.netns, daemon.veth)
    shutil.rmtree(daemon.root, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
