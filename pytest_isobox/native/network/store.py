"""On-disk state of networks, shared by every process that uses one isobox home.

Layout under `$ISOBOX_HOME/networks/`:
  by-name/<name>.json    a network: id, bridge, subnet, gateway, labels; written once, when
                         the network is made
  members/<name>/<ip>.json  one per address taken on that network: its container's id, names,
                         aliases and hosts file. The file names are the address allocator's
                         state: a directory listing says which addresses are taken
  members/<name>/<ip>.leaving-<veth>  an address whose container is gone but whose veth
                         the kernel may still be deleting: not handed out until it is gone
  endpoints/<id>.json    a container's attachment: its veths, networks, published ports and
                         the process holding its network namespace, written before anything
                         is created so a sweep can undo a half-made one

Every file is written whole under a new name and renamed into place (readers see all of it
or nothing), and no file is ever replaced: on ext4 a rename over an existing file forces the
new data out to the disk first (auto_da_alloc), 2 ms here, while a rename to a new name or
an unlink costs some microseconds. Callers hold `lock` (an flock) around each
read-modify-write, so concurrent processes never allocate one address twice.

Records of older versions kept the members inside the network's file; they are read as
members still, and dropped from there (one rewrite) when their container goes.

Bridges and subnets are host-wide, not per home: `HostRegistry` records every bridge of every
home under /run, so two homes never pick one subnet and a bridge whose home is gone is found.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_isobox.locks import HostLock

Record = dict[str, Any]
LEAVING = ".leaving-"  # a member file renamed so: its container is gone, its veth going


def _temp_copy(path: Path, data: Record) -> Path:
    """`data` as JSON in a new temporary file beside `path` (its folder made if missing)."""
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json.dumps(data, sort_keys=True).encode())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return tmp


def write_json_atomic(path: Path, data: Record) -> None:
    """Write JSON so that readers see the old file or the new one, never a part."""
    tmp = _temp_copy(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_json(path: Path, data: Record) -> bool:
    """Write JSON under a name that must not exist yet, whole or not at all (readers never see
    a part); False when the name exists."""
    tmp = _temp_copy(path, data)
    try:
        os.link(tmp, path)  # unlike a rename, fails when the name exists
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


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


def network_path(home: Path, name: str) -> Path:
    return Path(home) / "networks" / "by-name" / f"{name}.json"


class NetworkStore:
    """One home's network, member and endpoint records. Hold `lock` around read-modify-write.

    A network record read here has its members (container id -> ip, name, hostname, aliases,
    hosts file) filled in from the member files; `members=False` leaves them out, for callers
    that need only the network's own fields."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.root = self.home / "networks"
        (self.home / "locks").mkdir(parents=True, exist_ok=True)
        self._lock = HostLock(self.home / "locks" / "networks.lock")

    @property
    def lock(self) -> HostLock:
        return self._lock

    def _network_path(self, name: str) -> Path:
        return network_path(self.home, name)

    def _endpoint_path(self, container_id: str) -> Path:
        return self.root / "endpoints" / f"{container_id}.json"

    def _members_dir(self, name: str) -> Path:
        return self.root / "members" / name

    def network(self, name: str, *, members: bool = True) -> Record | None:
        record = read_json(self._network_path(name))
        if record is not None:
            self._fill_members(record, members)
        return record

    def networks(self, *, members: bool = True) -> list[Record]:
        records = list(_records(self.root / "by-name"))
        for record in records:
            self._fill_members(record, members)
        return records

    def _fill_members(self, record: Record, read: bool) -> None:
        legacy = record.get("members") or {}
        record["legacy_members"] = sorted(legacy)
        record["members"] = dict(legacy)
        if read:
            for member in _records(self._members_dir(record["name"])):
                record["members"][member["id"]] = member

    def addresses(self, name: str) -> tuple[set[str], dict[str, str]]:
        """One directory listing: the addresses members hold on a network, and those of
        removed containers whose veth may still exist (ip -> veth name)."""
        try:
            listed = os.listdir(self._members_dir(name))
        except FileNotFoundError:
            listed = []
        taken = {entry[:-5] for entry in listed if entry.endswith(".json")
                 and not entry.startswith(".")}
        return taken, dict(entry.split(LEAVING, 1) for entry in listed if LEAVING in entry)

    def taken_addresses(self, name: str) -> set[str]:
        return self.addresses(name)[0]

    def save_network(self, record: Record) -> None:
        """Write a network's own fields (a new network; members are written one by one)."""
        fields = {k: v for k, v in record.items() if k not in ("members", "legacy_members")}
        write_json_atomic(self._network_path(record["name"]), fields)

    def update_network(self, name: str, **fields: Any) -> None:
        """Set fields of a network's own record (a rewrite: off the start path)."""
        stored = read_json(self._network_path(name))
        if stored is not None:
            stored.update(fields)
            write_json_atomic(self._network_path(name), stored)

    def delete_network(self, name: str) -> None:
        self._network_path(name).unlink(missing_ok=True)
        folder = self._members_dir(name)
        if folder.is_dir():
            for entry in os.listdir(folder):
                (folder / entry).unlink(missing_ok=True)
            folder.rmdir()

    def add_member(self, name: str, member: Record) -> None:
        """Take member["ip"] on network `name` for container member["id"]."""
        write_json_atomic(self._members_dir(name) / f"{member['ip']}.json", member)

    def remove_address(self, name: str, ip: str, container_id: str,
                       leaving_veth: str | None = None) -> None:
        """Give back the container's address `ip` on a network; with `leaving_veth`, the
        address stays taken (see `leaving_addresses`) until that veth is gone."""
        path = self._members_dir(name) / f"{ip}.json"
        member = read_json(path)
        if member is None or member.get("id") != container_id:
            return
        if leaving_veth is None:
            path.unlink(missing_ok=True)
        else:
            os.replace(path, path.with_name(f"{ip}{LEAVING}{leaving_veth}"))

    def leaving_addresses(self, name: str) -> dict[str, str]:
        """Addresses of removed containers whose veth may still exist: ip -> veth name."""
        return self.addresses(name)[1]

    def forget_leaving(self, name: str, ip: str, veth: str) -> None:
        """The veth that held `ip` is gone: the address is free."""
        (self._members_dir(name) / f"{ip}{LEAVING}{veth}").unlink(missing_ok=True)

    def remove_member(self, record: Record, container_id: str) -> None:
        """Give back a container's address on a network (as read by `network`)."""
        member = record["members"].get(container_id)
        if member is None:
            return
        (self._members_dir(record["name"]) / f"{member['ip']}.json").unlink(missing_ok=True)
        if container_id in record.get("legacy_members", ()):
            stored = read_json(self._network_path(record["name"]))
            if stored is not None and container_id in stored.get("members", {}):
                del stored["members"][container_id]
                write_json_atomic(self._network_path(record["name"]), stored)

    def endpoint(self, container_id: str) -> Record | None:
        return read_json(self._endpoint_path(container_id))

    def endpoints(self) -> list[Record]:
        return list(_records(self.root / "endpoints"))

    def create_endpoint(self, record: Record) -> bool:
        """Record a new attachment; False when the container has one already."""
        return create_json(self._endpoint_path(record["id"]), record)

    def save_endpoint(self, record: Record) -> None:
        """Rewrite an attachment (`network connect`/`disconnect`: off the start path)."""
        write_json_atomic(self._endpoint_path(record["id"]), record)

    def delete_endpoint(self, container_id: str) -> None:
        self._endpoint_path(container_id).unlink(missing_ok=True)


def host_registry_dir() -> Path:
    """Host-wide state lives on tmpfs, so it vanishes with the bridges at reboot."""
    return Path(os.environ.get("ISOBOX_RUN_DIR", "/run/isobox")) / "networks"


def host_has_networks() -> bool:
    """Whether any home has a bridge on this host (one directory listing): then a sweep from
    any home has something to look at, even from a home that never had a network."""
    try:
        return any(name.endswith(".json") for name in os.listdir(host_registry_dir()))
    except FileNotFoundError:
        return False


class HostRegistry:
    """Every isobox bridge on this host: bridge name -> home, network name, id and subnet.

    Hold `lock` while choosing a subnet and recording it, so homes never pick the same one.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or host_registry_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = HostLock(self.root.parent / "networks.lock")

    @property
    def lock(self) -> HostLock:
        return self._lock

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
            net = read_json(network_path(Path(entry["home"]), entry["name"]))
            if net is None or net.get("id") != entry["id"]:
                found.append(entry)
        return found
