"""Named volumes of one home: `<home>/volumes/<name>/_data`, as Docker lays them out.

Creating is idempotent (a container asking for a missing volume creates it, as Docker does);
removing refuses a volume that a container of the home still names, unless forced.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from pytest_isobox.engine import ConflictError, InvalidSpec, VolumeNotFound

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


class VolumeStore:
    def __init__(self, home: Path, users_of: Callable[[str], Iterable[str]]) -> None:
        self.root = home / "volumes"
        self.root.mkdir(parents=True, exist_ok=True)
        self._users_of = users_of  # volume name -> ids of the containers that mount it

    def path(self, name: str) -> Path:
        """The directory a container mounts for volume `name`."""
        if not _NAME.fullmatch(name):
            raise InvalidSpec(f"invalid volume name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                              "are allowed")
        return self.root / name / "_data"

    def create(self, name: str) -> str:
        self.path(name).mkdir(parents=True, exist_ok=True)
        return name

    def remove(self, name: str, *, force: bool = False) -> None:
        path = self.path(name)
        if not path.is_dir():
            raise VolumeNotFound(f"no such volume: {name}")
        users = [cid[:12] for cid in self._users_of(name)]
        if users and not force:
            raise ConflictError(f"volume {name} is in use by containers {', '.join(users)}")
        import shutil

        shutil.rmtree(path.parent)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "_data").is_dir())
