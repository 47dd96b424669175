"""On-disk state of networks, shared by every process that uses one isobox home.

Layout under `$ISOBOX_HOME/networks/`:
  by-name/<name>.json    a network: id, bridge, subnet, gateway, labels, and its members
                         (container id -> ip, mac, names, aliases, hosts file): the address
                         allocator's state, one file per network
  endpoints/<id>.json    a container's attachment: its veths, networks and published ports,
                         written before anything is created so a sweep can undo a half-made one

Every file is replaced atomically (temp file + rename). Callers hold `lock` (a filelock) around
each read-modify-write, so concurrent processes never allocate one address twice.

Bridges and subnets are host-wide, not per home: `HostRegistry` records every bridge of every
home under /run, so two homes never pick one subnet and a bridge whose home is gone is found.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

Record = dict[str, Any]


def write_json_atomic(path: Path, data: Record) -> None:
    """Write JSON so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_json(path: Path) -> Record | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _records(folder: Path) -> Iterator[Record]:
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        record = read_json(path)
        if record is not None:
            yield record


class ForkSafeLock:
    """A filelock per process: a FileLock must not cross a fork (the runtime's monitor is a
    fork of the engine's process), so each process gets its own instance on first use."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._lock: FileLock | None = None
        self._pid = 0

    def get(self) -> FileLock:
        if self._lock is None or self._pid != os.getpid():
            self._lock, self._pid = FileLock(self.path), os.getpid()
        return self._lock


def network_path(home: Path, name: str) -> Path:
    return Path(home) / "networks" / "by-name" / f"{name}.json"


class NetworkStore:
    """One home's network and endpoint records. Hold `lock` around read-modify-write."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.root = self.home / "networks"
        (self.home / "locks").mkdir(parents=True, exist_ok=True)
        self._lock = ForkSafeLock(self.home / "locks" / "networks.lock")

    @property
    def lock(self) -> FileLock:
        return self._lock.get()

    def _network_path(self, name: str) -> Path:
        return network_path(self.home, name)

    def _endpoint_path(self, container_id: str) -> Path:
        return self.root / "endpoints" / f"{container_id}.json"

    def network(self, name: str) -> Record | None:
        return read_json(self._network_path(name))

    def networks(self) -> list[Record]:
        return list(_records(self.root / "by-name"))

    def save_network(self, record: Record) -> None:
        write_json_atomic(self._network_path(record["name"]), record)

    def delete_network(self, name: str) -> None:
        self._network_path(name).unlink(missing_ok=True)

    def endpoint(self, container_id: str) -> Record | None:
        return read_json(self._endpoint_path(container_id))

    def endpoints(self) -> list[Record]:
        return list(_records(self.root / "endpoints"))

    def save_endpoint(self, record: Record) -> None:
        write_json_atomic(self._endpoint_path(record["id"]), record)

    def delete_endpoint(self, container_id: str) -> None:
        self._endpoint_path(container_id).unlink(missing_ok=True)


def host_registry_dir() -> Path:
    """Host-wide state lives on tmpfs, so it vanishes with the bridges at reboot."""
    return Path(os.environ.get("ISOBOX_RUN_DIR", "/run/isobox")) / "networks"


class HostRegistry:
    """Every isobox bridge on this host: bridge name -> home, network name, id and subnet.

    Hold `lock` while choosing a subnet and recording it, so homes never pick the same one.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or host_registry_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = ForkSafeLock(self.root.parent / "networks.lock")

    @property
    def lock(self) -> FileLock:
        return self._lock.get()

    def entries(self) -> list[Record]:
        return list(_records(self.root))

    def add(self, bridge: str, home: Path, name: str, network_id: str, subnet: str) -> None:
        write_json_atomic(self.root / f"{bridge}.json", {
            "bridge": bridge, "home": str(home), "name": name, "id": network_id,
            "subnet": subnet,
        })

    def remove(self, bridge: str) -> None:
        (self.root / f"{bridge}.json").unlink(missing_ok=True)

    def orphans(self) -> list[Record]:
        """Entries whose home no longer holds that network (home deleted, or state lost)."""
        found = []
        for entry in self.entries():
            net = read_json(network_path(entry["home"], entry["name"]))
            if net is None or net.get("id") != entry["id"]:
                found.append(entry)
        return found
