"""User namespace id maps, read from /proc: whether an id inside a namespace has a host id
(a tar entry's owner kept or made root; devpts given the tty group or not)."""

from __future__ import annotations


def mapped(kind: str, inside: int, pid: int | str = "self") -> bool:
    """Whether the user namespace of process `pid` maps `inside` (kind: "uid" or "gid"). The
    map's first column is the id inside, whichever namespace reads it."""
    with open(f"/proc/{pid}/{kind}_map") as f:
        for line in f:
            start, _, count = (int(n) for n in line.split())
            if start <= inside < start + count:
                return True
    return False
