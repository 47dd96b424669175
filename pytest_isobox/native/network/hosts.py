"""The /etc/hosts a container reads, which is how it finds its peers by name and alias.

Static busybox (glibc's files backend) reads /etc/hosts, so a file kept current is the whole
resolver. The runtime bind-mounts the file into the container, so it is rewritten in place
(same inode), never replaced by a rename the mount would not see.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

LOCALHOST = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def render(entries: Iterable[tuple[str, Iterable[str]]], *, localhost: bool = True) -> str:
    """Localhost lines, then one line per (address, names); empty and repeated names dropped."""
    lines = [LOCALHOST] if localhost else []
    for ip, names in entries:
        unique = list(dict.fromkeys(n for n in names if n))
        if unique:
            lines.append(f"{ip}\t{' '.join(unique)}\n")
    return "".join(lines)


def extra_entries(extra_hosts: Iterable[str], gateway: str) -> list[tuple[str, list[str]]]:
    """`--add-host NAME:IP` lines as (address, [name]); `host-gateway` is `gateway` (the
    host's address on the container's network, as Docker's host-gateway-ip)."""
    entries = []
    for item in extra_hosts:
        name, _, ip = item.partition(":")
        entries.append((gateway if ip == "host-gateway" else ip, [name]))
    return entries


def write_in_place(path: Path, text: str) -> None:
    """Replace the file's content keeping its inode (a bind mount of it sees the change)."""
    data = text.encode()
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644), "wb") as f:
        f.write(data)
        f.truncate()


def host_hosts_text() -> str:
    """The host's own /etc/hosts, for containers that share the host's network."""
    try:
        return Path("/etc/hosts").read_text()
    except OSError:
        return LOCALHOST
