"""iptables rules of our bridges, each tagged with its network.

Root-only. Every rule carries a comment `isobox:net:<network id>`: the network removes its
rules by that tag, and a sweep finds a dead network's rules by it. One change is one
`iptables-restore --noflush -w` transaction: all of its rules or none. These change only when
a network is made or removed; a container's published ports are nftables rules of our own
table (`nft`), cheap to change on every start. Older versions tagged per-container iptables
rules `isobox:ctr:<container id>`; the sweep still removes those.

Beside dockerd (FORWARD policy DROP, br_netfilter on) the forwarding rules go into DOCKER-USER,
which Docker evaluates first and never flushes; without Docker they go into FORWARD. Each
network accepts there the connections DNAT'd to its bridge, which is what lets a port
published on a non-loopback address through Docker's DROP policy.
"""

from __future__ import annotations

from collections import defaultdict
from ipaddress import IPv4Network

from pytest_isobox.engine import EngineUnavailable

Rules = dict[str, list[str]]  # table -> rule lines in iptables-restore syntax

OTHER_BRIDGES = ("isobox-+", "docker+", "br-+")  # networks ours must not reach
RULES_VERSION = 2  # 2: networks accept DNAT'd connections (before, each published port did)


def network_tag(network_id: str) -> str:
    return f"isobox:net:{network_id}"


def container_tag(container_id: str) -> str:
    """The tag of an older version's per-container rules (see the module docstring)."""
    return f"isobox:ctr:{container_id}"


class Pending:
    """An iptables command under way; `wait` returns its output or raises naming the failure."""

    def __init__(self, args: list[str], stdin: str | None = None) -> None:
        import shutil  # (subprocess, with its locale: only a network made or removed runs one)
        import subprocess

        if shutil.which(args[0]) is None:
            raise EngineUnavailable(f"{args[0]} is not installed (Debian package iptables)")
        self.args, self.stdin = args, stdin
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        self._result: str | None = None

    def wait(self) -> str:
        if self._result is None:
            out, err = self._proc.communicate(self.stdin)
            if self._proc.returncode != 0:
                detail = err.strip().splitlines()
                raise OSError(f"{' '.join(self.args)} failed: "
                              f"{detail[-1] if detail else self._proc.returncode}"
                              + (f"\n{self.stdin}" if self.stdin else ""))
            self._result = out
        return self._result


def _run(args: list[str], stdin: str | None = None) -> str:
    return Pending(args, stdin).wait()


def start_apply(rules: Rules) -> Pending | None:
    """Start applying rule lines (`-A ...`, `-I ...`, `-D ...`) of several tables as one
    transaction; None when there is nothing to apply. Call `wait()` on the result."""
    text = "".join(
        f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
        for table, lines in rules.items() if lines
    )
    return Pending(["iptables-restore", "--noflush", "-w"], text) if text else None


def apply(rules: Rules) -> None:
    """Apply rule lines of several tables in one transaction: all of them or none."""
    pending = start_apply(rules)
    if pending is not None:
        pending.wait()


def start_save() -> Pending:
    """Start reading the host's rules (for `tagged_rules`), so other work can go on meanwhile."""
    return Pending(["iptables-save"])


def tagged_rules(saved: Pending | None = None) -> dict[str, Rules]:
    """Every rule of ours on the host: tag -> table -> `-A` lines as iptables-save prints them."""
    found: dict[str, Rules] = defaultdict(lambda: defaultdict(list))
    table = ""
    for line in (saved or start_save()).wait().splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A ") and "isobox:" in line:
            for word in line.split():
                word = word.strip('"')
                if word.startswith(("isobox:net:", "isobox:ctr:")):
                    found[word][table].append(line)
    return found


def remove_tagged(tags: set[str], saved: Pending | None = None) -> int:
    """Delete every rule carrying one of `tags`, in one transaction; how many were deleted.
    `saved`: an iptables-save started earlier with `start_save`."""
    deletions: Rules = defaultdict(list)
    for tag, rules in tagged_rules(saved).items():
        if tag in tags:
            for table, lines in rules.items():
                deletions[table].extend("-D" + line[2:] for line in lines)
    apply(deletions)
    return sum(len(lines) for lines in deletions.values())


def forward_chain() -> str:
    """DOCKER-USER when dockerd made it (it runs before Docker's DROP), else FORWARD."""
    saved = _run(["iptables-save", "-t", "filter"])
    return "DOCKER-USER" if "\n:DOCKER-USER " in saved else "FORWARD"


def dnat_accept(bridge: str, network_id: str) -> str:
    """The forwarding rule for connections DNAT'd to a published port on this bridge."""
    return f"-o {bridge} -m conntrack --ctstate DNAT -m comment --comment " \
           f"{network_tag(network_id)} -j ACCEPT"


def network_rules(bridge: str, subnet: IPv4Network, network_id: str, chain: str,
                  internal: bool = False) -> Rules:
    """A network's rules: talk inside it, go out NATed, reach no other bridge, let connections
    DNAT'd to a published port in, and DNAT'd loopback connections too (their 127/8 source
    masqueraded to the gateway). An internal network (`--internal`) talks inside only: no
    traffic is forwarded in or out of its bridge and nothing is masqueraded, as Docker's."""
    c = f"-m comment --comment {network_tag(network_id)}"
    if internal:
        forward = [f"-i {bridge} -o {bridge} {c} -j ACCEPT",
                   f"-i {bridge} ! -o {bridge} {c} -j DROP",
                   f"! -i {bridge} -o {bridge} {c} -j DROP"]
        return {"filter": [f"-I {chain} {n} {rule}" for n, rule in enumerate(forward, 1)]}
    drops = [f"-i {bridge} -o {other} {c} -j DROP" for other in OTHER_BRIDGES]
    forward = [
        f"-i {bridge} -o {bridge} {c} -j ACCEPT",
        *drops,
        f"-i {bridge} {c} -j ACCEPT",
        f"-o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED {c} -j ACCEPT",
        dnat_accept(bridge, network_id),
    ]
    return {
        "filter": [f"-I {chain} {n} {rule}" for n, rule in enumerate(forward, 1)],
        "nat": [
            f"-A POSTROUTING -s {subnet} ! -o {bridge} {c} -j MASQUERADE",
            f"-A POSTROUTING -s 127.0.0.0/8 -o {bridge} {c} -j MASQUERADE",
        ],
    }

