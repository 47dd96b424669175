"""Another "host" for registry tests: a network namespace with a veth to the host on a /30 no
route of the host covers, so its address is neither loopback nor anything else the host has.

Registries started there (`Registry(netns=...)`) are reached at `NetnsHost.ip` as a remote
machine would be: plain http is not allowed for it unless listed as insecure. `remove` ends
every process left in the namespace by PID, then deletes the veth and the namespace.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
from dataclasses import dataclass

from tests.docker.remote_daemon import _free_subnets, _pids_in, _run, _wait_gone


@dataclass
class NetnsHost:
    netns: str
    veth: str
    ip: str  # the namespace's end of the veth


def make() -> NetnsHost:
    net = _free_subnets(1)[0]
    tag = os.urandom(3).hex()
    veth_net = ipaddress.ip_network(f"{net.network_address}/30")
    host_ip, ns_ip = (str(h) for h in list(veth_net.hosts())[:2])
    host = NetnsHost(netns=f"isobox-rg-{tag}", veth=f"ibrg{tag}", ip=ns_ip)
    try:
        _run("ip", "netns", "add", host.netns)
        _run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
             "netns", host.netns)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", host.veth)
        _run("ip", "link", "set", host.veth, "up")
        inside = ("ip", "netns", "exec", host.netns)
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(*inside, "ip", "addr", "add", f"{ns_ip}/30", "dev", "eth0")
        _run(*inside, "ip", "link", "set", "eth0", "up")
    except BaseException:
        remove(host)
        raise
    return host


def remove(host: NetnsHost) -> None:
    for pid in _pids_in(host.netns):  # what a failed test left running there, by PID
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in _pids_in(host.netns):
        _wait_gone(pid)
    subprocess.run(["ip", "link", "del", host.veth], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, check=False)
