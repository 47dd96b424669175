"""Who a container process runs as, resolved the way Docker (runc's GetExecUser) does it.

`name`, `uid`, `name:group`, `uid:gid` are looked up in the container's own /etc/passwd and
/etc/group, never the host's. A numeric uid absent from passwd is used as is (gid 0, home /).
Without an explicit group, the user's primary gid applies plus every group listing the user.
The primary gid is always among the supplementary groups too (moby's fix for
GHSA-rc4r-wh2q-q6c4, so that files owned by that group stay reachable after setgroups).
"""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.engine import ContainerError
from pytest_isobox.engine.records import FrozenRecord, record


@record
class ExecUser(FrozenRecord):
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _entries(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def resolve_user(spec: str | None, passwd: Path, group: Path) -> ExecUser:
    """Resolve a Docker user spec against the given passwd and group files."""
    user_part, _, group_part = (spec or "").partition(":")
    user_part = user_part or "0"
    uid_number = _number(user_part)
    uid, gid, home, name = (uid_number if uid_number is not None else 0), 0, "/", None
    found = False
    for row in _entries(passwd):
        if len(row) < 7 or not row[2].isdigit() or not row[3].isdigit():
            continue
        if row[0] == user_part or (uid_number is not None and int(row[2]) == uid_number):
            name, uid, gid, home, found = row[0], int(row[2]), int(row[3]), row[5] or "/", True
            break
    if not found and uid_number is None:
        raise ContainerError(f"unable to find user {user_part}: no matching entries in passwd file")
    groups: list[int] = []
    if group_part:
        gid_number = _number(group_part)
        for row in _entries(group):
            if len(row) >= 3 and row[2].isdigit() and (
                    row[0] == group_part or (gid_number is not None and int(row[2]) == gid_number)):
                gid = int(row[2])
                break
        else:
            if gid_number is None:
                raise ContainerError(
                    f"unable to find group {group_part}: no matching entries in group file")
            gid = gid_number
    elif name is not None:
        for row in _entries(group):
            if len(row) >= 4 and row[2].isdigit() and name in row[3].split(",") \
                    and int(row[2]) not in groups:
                groups.append(int(row[2]))
    return ExecUser(uid=uid, gid=gid, groups=(gid, *(g for g in groups if g != gid)), home=home)
