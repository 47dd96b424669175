"""Named volumes through the VolumeStore (native/volumes.py)."""

from __future__ import annotations

import functools


class VolumesRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    def _volume_users(self, name: str) -> list[str]:
        return [c.id for c in self.store.all()
                if any(m["type"] == "volume" and m["source"] == name
                       for m in c.config["spec"]["mounts"])]

    def volume_create(self, name: str) -> str:
        return self.volume_store.create(name)

    def volume_remove(self, name: str, *, force: bool = False) -> None:
        if self._rootless is not None:  # its files may belong to mapped ids
            self._rootless.run(functools.partial(self.volume_store.remove, name, force=force))
        else:
            self.volume_store.remove(name, force=force)

    def volume_document(self, name: str) -> dict:
        """Docker's volume inspect document: the local driver's, its data under the home."""
        from pytest_isobox.engine import VolumeNotFound, documents

        path = self.volume_store.path(name)
        if not path.is_dir():
            raise VolumeNotFound(f"no such volume: {name}")
        return documents.volume_document(name, str(path), created=path.parent.stat().st_mtime)

    def volumes(self) -> list[str]:
        return self.volume_store.names()

