"""Network namespaces for tests: another "host" on a veth, or a namespace with no network.

`make` gives a namespace whose `eth0` is one end of a veth to the host, on a /30 no route or
address of the host covers: the namespace's address is neither loopback nor anything else the
host has, so what listens there is reached as a remote machine would be (remote dockerds in
tests/docker/remote_daemon.py, registries in tests/registry). `make_empty` gives one with no
interface up at all (not even lo), where any connection or DNS lookup fails at once.

`remove` ends every process left in the namespace by PID (never by name), waits until they
are gone, then deletes the veth and the namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import subprocess
from dataclasses import dataclass


@dataclass
class NetnsHost:
    netns: str
    veth: str  # the host's end
    ip: str  # the namespace's end (eth0 inside)
    host_ip: str  # the host's end's address


def run(*argv: str) -> str:
    """Run a command; its stdout, or RuntimeError with its stderr."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination routed or assigned on the host (any table)."""
    nets = []
    for route in json.loads(run("ip", "-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            nets.append(ipaddress.ip_network(dst, strict=False))
    for link in json.loads(run("ip", "-j", "-4", "addr") or "[]"):
        for info in link.get("addr_info", []):
            nets.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}",
                                             strict=False))
    return nets


def free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """`count` distinct /24s under 10.0.0.0/8 overlapping nothing the host routes."""
    used = used_networks()
    rng = random.Random()
    chosen: list[ipaddress.IPv4Network] = []
    while len(chosen) < count:
        net = ipaddress.ip_network(f"10.{rng.randrange(100, 250)}.{rng.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used + chosen):
            chosen.append(net)
    return chosen


def make(net: ipaddress.IPv4Network | None = None, *, name: str = "isobox-ns",
         veth: str = "ibns") -> NetnsHost:
    """A namespace `<name>-<tag>` with lo up and a veth `<veth><tag>` to the host on the /30 at
    the start of `net` (a free /24 when None): the host is .1, the namespace .2."""
    net = net or free_subnets(1)[0]
    tag = os.urandom(3).hex()
    host_ip, ns_ip = (str(h) for h in list(net.hosts())[:2])
    host = NetnsHost(netns=f"{name}-{tag}", veth=f"{veth}{tag}", ip=ns_ip, host_ip=host_ip)
    try:
        run("ip", "netns", "add", host.netns)
        run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
            "netns", host.netns)
        run("ip", "addr", "add", f"{host_ip}/30", "dev", host.veth)
        run("ip", "link", "set", host.veth, "up")
        inside = ("ip", "netns", "exec", host.netns)
        run(*inside, "ip", "link", "set", "lo", "up")
        run(*inside, "ip", "addr", "add", f"{ns_ip}/30", "dev", "eth0")
        run(*inside, "ip", "link", "set", "eth0", "up")
    except BaseException:
        remove(host)
        raise
    return host


def make_empty(name: str = "isobox-nonet") -> str:
    """A namespace with no interface up (lo down too); returns its name."""
    netns = f"{name}-{os.urandom(3).hex()}"
    run("ip", "netns", "add", netns)
    return netns


def pids_in(netns: str) -> list[int]:
    try:
        out = run("ip", "netns", "pids", netns)
    except RuntimeError:
        return []
    return [int(p) for p in out.split()]


def end_processes(netns: str) -> None:
    """SIGKILL what is left running in the namespace, by PID, and wait until it is gone."""
    for pid in pids_in(netns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids_in(netns):
        wait_gone(pid)


def wait_gone(pid: int) -> None:
    """Wait (pidfd) until a killed process is gone, so its mounts and netns go with it."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        import select

        select.select([fd], [], [], 10)
    finally:
        os.close(fd)


def remove_links(netns: str, veth: str | None = None) -> None:
    """Delete the veth (its peer goes with it) and the namespace; missing ones are fine."""
    if veth:
        subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def remove(host: NetnsHost | str) -> None:
    """End the namespace's processes, then delete its veth and the namespace itself."""
    netns, veth = (host, None) if isinstance(host, str) else (host.netns, host.veth)
    end_processes(netns)
    remove_links(netns, veth)
