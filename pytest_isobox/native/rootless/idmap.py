"""Which host ids a user namespace maps, from /etc/subuid and /etc/subgid (pure logic).

With subordinate ids (Debian's useradd gives each new user 65536 of them) the user is root
inside and ids 1..N inside are the subordinate range, so image files owned by `nobody` or a
`postgres` user keep distinct owners. Without them only one id is mapped (the user as root):
`IdMapping.note` says what that limits.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from pytest_isobox.engine import InvalidSpec

SUBUID_FILE = Path("/etc/subuid")
SUBGID_FILE = Path("/etc/subgid")

SINGLE_ID_NOTE = (
    "no subordinate ids for {user} in {subuid} and {subgid}: only one id is mapped (you, as root "
    "inside). Files an image gives to other users appear owned by root, a container cannot "
    "switch to another user or group, and supplementary groups cannot be set. Add a range "
    "with `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`."
)


@dataclass(frozen=True)
class IdRange:
    """`count` ids from `inside` in the namespace are `outside` onwards on the host."""

    inside: int
    outside: int
    count: int

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.count}"


@dataclass(frozen=True)
class IdMapping:
    """A user namespace's uid and gid maps. `note` is empty when subordinate ids are used."""

    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]
    note: str = ""

    @property
    def single(self) -> bool:
        """Only the user's own ids are mapped (no newuidmap; setgroups denied)."""
        return len(self.uids) == 1 and self.uids[0].count == 1

    def host_uid(self, inside: int) -> int | None:
        return _to_host(self.uids, inside)

    def host_gid(self, inside: int) -> int | None:
        return _to_host(self.gids, inside)

    def dump(self) -> dict:
        return {"uids": [r.line() for r in self.uids], "gids": [r.line() for r in self.gids],
                "note": self.note}


def _to_host(ranges: tuple[IdRange, ...], inside: int) -> int | None:
    for r in ranges:
        if r.inside <= inside < r.inside + r.count:
            return r.outside + inside - r.inside
    return None


def parse_subordinate(text: str, user: str, uid: int, source: str = "") -> list[tuple[int, int]]:
    """The (first id, count) ranges granted to `user` (by name or number) in subuid text.

    A malformed line for this user is an InvalidSpec naming the file and line; other users'
    lines are not checked (they are not ours to judge).
    """
    ranges = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        owner, _, rest = line.partition(":")
        if owner not in (user, str(uid)):
            continue
        start, _, count = rest.partition(":")
        if not (start.isdigit() and count.isdigit()) or int(count) == 0:
            raise InvalidSpec(f"{source or 'subordinate id file'}:{number}: malformed entry "
                              f"{line!r} (expected name:first:count)")
        ranges.append((int(start), int(count)))
    return ranges


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _ranges(own: int, granted: list[tuple[int, int]]) -> tuple[IdRange, ...]:
    ranges = [IdRange(0, own, 1)]
    inside = 1
    for start, count in granted:
        ranges.append(IdRange(inside, start, count))
        inside += count
    return tuple(ranges)


def mapping_for(uid: int, gid: int, user: str | None = None, *, subuid: Path = SUBUID_FILE,
                subgid: Path = SUBGID_FILE) -> IdMapping:
    """The mapping for `uid`/`gid`: root inside is the user; 1.. are its subordinate ids.

    Both files must grant a range, else the single-id mapping (with its note) is used.
    """
    if user is None:
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
    uid_ranges = parse_subordinate(_read(subuid), user, uid, str(subuid))
    gid_ranges = parse_subordinate(_read(subgid), user, uid, str(subgid))
    if uid_ranges and gid_ranges:
        return IdMapping(_ranges(uid, uid_ranges), _ranges(gid, gid_ranges))
    note = SINGLE_ID_NOTE.format(user=user, subuid=subuid, subgid=subgid)
    return IdMapping((IdRange(0, uid, 1),), (IdRange(0, gid, 1),), note)


def current_mapping() -> IdMapping:
    """The mapping for the calling process's real user."""
    return mapping_for(os.getuid(), os.getgid())
