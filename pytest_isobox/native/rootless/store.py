"""One owner per store: neither root nor a user ever writes into the other's store.

A rootless store differs from a root one in what its files mean: its layers were unpacked in
the user's namespace (owners are the user's subordinate ids, opaque directories are marked
with user.overlay.* xattrs), and root's layers carry trusted.* xattrs a user namespace cannot
read. Files root made in a user's store (locks, temp dirs, layers) the user could not remove
or lock, and a user cannot write into root's. So a store is used only by the uid owning its
directory, and a rootless store records the id mapping its layers were unpacked with
(`rootless.json`); a different mapping (subordinate ids changed) is refused, never mixed.
"""

from __future__ import annotations

import json
import os

from pytest_isobox.engine import EngineUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:  # (pathlib too: the read-only reader checks the owner without it)
    from pathlib import Path

    from pytest_isobox.native.rootless.idmap import IdMapping

MARKER = "rootless.json"


def check_owner(home: Path | str, euid: int | None = None) -> None:
    """Refuse a store whose directory belongs to another uid (root's or another user's)."""
    euid = os.geteuid() if euid is None else euid
    try:
        owner = os.stat(home).st_uid
    except FileNotFoundError:
        return
    except PermissionError:
        raise EngineUnavailable(f"the store {home} is not reachable for uid {euid} "
                                "(permission denied on the way): use a store of your own, "
                                "the default is ~/.cache/isobox") from None
    if owner == euid:
        return
    if euid == 0:
        raise EngineUnavailable(
            f"the store {home} belongs to uid {owner} (a rootless store); root would leave "
            "files there that user cannot change or remove: use another --isobox-home")
    raise EngineUnavailable(
        f"the store {home} belongs to uid {owner}, not to you (uid {euid}): rootless "
        "containers need a store of your own (the default is ~/.cache/isobox)")


def claim(home: Path, mapping: IdMapping) -> None:
    """Record `mapping` as the store's, or refuse if the store was made with another one.

    Called after `check_owner`; the marker is written atomically (temp file + rename).
    """
    marker = home / MARKER
    wanted = {"uids": mapping.dump()["uids"], "gids": mapping.dump()["gids"]}
    try:
        found = json.loads(marker.read_text())
    except FileNotFoundError:
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / f".{MARKER}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(wanted))
        os.replace(tmp, marker)
        return
    except ValueError:
        raise EngineUnavailable(f"{marker}: damaged; remove the store {home} or set "
                                "--isobox-home to another directory") from None
    if {"uids": found.get("uids"), "gids": found.get("gids")} != wanted:
        raise EngineUnavailable(
            f"the store {home} was made with the id mapping {found} and yours is now "
            f"{wanted} (your subordinate ids changed): its files would have the wrong owners. "
            f"Remove {home} or use another --isobox-home")
