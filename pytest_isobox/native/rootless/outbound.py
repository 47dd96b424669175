"""Outbound network for rootless containers: slirp4netns on the helper namespace, and NAT.

Containers on rootless bridges have the helper network namespace as their gateway, and the
helper namespace has no link to the host. slirp4netns (Debian's slirp4netns) gives it one: a
tap device `tap0` (10.0.2.100/24, default route via 10.0.2.2) whose packets slirp4netns, a
process of the user's in the host's network namespace, turns into ordinary sockets of the
user's. The helper namespace then routes the bridges out through tap0, masqueraded to
10.0.2.100 (iptables in the helper namespace: the user namespace owns it, so its root may);
FORWARD's policy drops everything else, so bridges still never reach each other.

slirp4netns runs with `--disable-host-loopback` unless asked otherwise: without it a
container could reach every service bound to the host's 127.0.0.1 (as 10.0.2.2), which
publishing on loopback is meant to keep private. Tests that prove the outbound path end to
end allow it on a namespace of their own (ISOBOX_SLIRP_HOST_LOOPBACK=1), since the host's
loopback is the only outside address they may reach.

Outbound is best effort: without slirp4netns, iptables-restore or a usable /dev/net/tun the
holder runs without it, forwarding stays off, and `reason_unavailable` says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from ipaddress import IPv4Network
from pathlib import Path

SLIRP_CIDR = IPv4Network("10.0.2.0/24")  # slirp4netns's default network
SLIRP_HOST = "10.0.2.2"  # the host's loopback, when allowed
TAP = "tap0"
MTU = 65520
READY_TIMEOUT = 10.0  # seconds slirp4netns may take to configure tap0
TUN = Path("/dev/net/tun")
HOST_LOOPBACK_ENV = "ISOBOX_SLIRP_HOST_LOOPBACK"
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"  # not on an ordinary user's PATH on Debian

NAT_RULES = f"""*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -o {TAP} -j ACCEPT
-A FORWARD -i {TAP} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o {TAP} -j MASQUERADE
COMMIT
"""


def host_loopback_wanted(environ: dict[str, str] | None = None) -> bool:
    """Whether containers may reach the host's loopback as 10.0.2.2 (off unless the
    environment says ISOBOX_SLIRP_HOST_LOOPBACK=1)."""
    value = (os.environ if environ is None else environ).get(HOST_LOOPBACK_ENV, "")
    return value.strip().lower() in ("1", "true", "yes")


def find_tool(name: str) -> str | None:
    """`name` on PATH or in the sbin directories an ordinary user's PATH lacks."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")


def reason_unavailable(tun: Path = TUN) -> str | None:
    """Why outbound cannot work for this user (checked before the namespaces are made)."""
    if find_tool("slirp4netns") is None:
        return "slirp4netns not found (Debian/Ubuntu: apt-get install slirp4netns)"
    if find_tool("iptables-restore") is None:
        return "iptables-restore not found (Debian/Ubuntu: apt-get install iptables)"
    if not os.access(tun, os.R_OK | os.W_OK):
        return (f"{tun} is not readable and writable for uid {os.getuid()} (most distributions "
                f"make it mode 0666, as udev does: chmod 0666 {tun})")
    return None


def slirp_command(target_pid: int, ready_fd: int, exit_fd: int, host_loopback: bool,
                  ) -> list[str]:
    """slirp4netns for the network namespace of `target_pid` (it joins that process's user
    namespace itself): tap0 configured, ready reported on `ready_fd`, and it exits when
    `exit_fd` closes, i.e. with the holder."""
    argv = [find_tool("slirp4netns") or "slirp4netns", "--configure", f"--mtu={MTU}",
            f"--ready-fd={ready_fd}", f"--exit-fd={exit_fd}"]
    if not host_loopback:
        argv.append("--disable-host-loopback")
    return [*argv, str(target_pid), TAP]


def route_out() -> None:
    """In the helper namespace, once tap0 is up: NAT the bridges out through tap0, then turn
    forwarding on. Bridged traffic (within one network) is kept out of iptables, so the
    FORWARD policy only sees routed packets. Raises OSError if the rules cannot be loaded."""
    bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")  # with br_netfilter
    if bridge_nf.exists():
        bridge_nf.write_text("0")
    tool = find_tool("iptables-restore") or "iptables-restore"
    done = subprocess.run([tool], input=NAT_RULES, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"{tool} in the helper namespace failed: "
                      f"{done.stderr.strip() or done.returncode}")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
