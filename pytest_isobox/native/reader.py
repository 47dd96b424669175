"""`NativeReader`: what `open_engine("native", read_only=True)` gives, the native engine for a
process that only looks (`isobox ps`, `inspect`, `images`, `network ls`, `logs`, ...).

`docker ps` takes about 12 ms here; importing the whole engine (its roles, specs.py's
dataclasses, the cgroup and network code) takes several times that. The reader answers the
common questions itself, from the files the engine writes (containers/<id>/config.json,
state.json, name, exit, keeper.json, the cgroup freezer; the networks' records; the image
store's tags, records and blobs, through images/storereader.py), with nothing heavier than
`json` imported, and hands everything else to a real `NativeEngine(read_only=True)`, opened
on first need. So an answer is the engine's own whenever the reader is not sure: a container
whose end is not yet folded into its state (the engine then writes it), rootless mode, a verb
it does not know, `logs -f`, `inspect -s`, a damaged image blob, an image reference that is
not a stored tag or a full id, an unused default network (the engine's close removes it).
What it reads is read the way `state.ContainerStore`, `views.ViewsRole`, `network.store` and
`images.store` read it; tests/native/test_reader.py compares the two.
"""

from __future__ import annotations

import json
import os

from pytest_isobox.engine.errors import ContainerNotFound
from pytest_isobox.engine.records import ContainerState, ImageInfo, NetworkInfo
from pytest_isobox.native.front import EngineFront

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

_PULL_POLICIES = ("missing", "always", "never")


class _Unsure(Exception):
    """The reader cannot answer this alone: the engine answers."""


class NativeReader(EngineFront):
    """The native engine's read-only verbs over its files; the engine for the rest."""

    _own = ("_options", "_store", "_store_files")
    pull_policy = None  # (it never pulls: the CLI's progress printer has nothing to follow)

    def __init__(self, home: str | os.PathLike | None = None, *, rootless: bool | None = None,
                 limits: str = "strict", pull: str | None = None, read_only: bool = True,
                 **options: object) -> None:
        self._options = {"home": home, "rootless": rootless, "limits": limits, "pull": pull,
                         "read_only": True, **options}
        if not (not options and read_only
                and self._open_files(home, rootless, limits, pull, _PULL_POLICIES)):
            self._full()  # rootless mode, an option to check: the engine, with its errors
            return
        # what NativeEngine's open makes of a new home, so the reader leaves the same
        self._containers = os.path.join(self.home, "containers")
        for sub in ("containers/.names", "containers/.trash", "volumes", "runtime"):
            os.makedirs(os.path.join(self.home, sub), exist_ok=True)
        self._freezers: list[tuple[str, str]] | None = None
        self._store: Any = None
        self._store_files: Any = None

    # ------------------------------------------------------------ containers
    def containers(self, *, all: bool = False) -> list[ContainerState]:
        if self._engine is not None:
            return self._engine.containers(all=all)
        found = []
        for cid in self._ids():
            cdir = os.path.join(self._containers, cid)
            if not os.path.exists(os.path.join(cdir, "config.json")):
                continue
            try:
                st = self._state_of(cid)
            except _Unsure:
                return self._full().containers(all=all)
            except Exception:  # noqa: BLE001, S112 - removed meanwhile (as views.containers)
                continue
            if all or st.status in ("running", "paused"):  # Docker lists paused ones
                found.append(st)
        return sorted(found, key=lambda s: s.created_at or 0, reverse=True)

    def state(self, container: str) -> ContainerState:
        if self._engine is not None:
            return self._engine.state(container)
        cid = self._find(container)
        try:
            return self._state_of(cid)
        except _Unsure:
            return self._full().state(cid)

    def logs(self, container: str, *, stdout: bool = True, stderr: bool = True,
             follow: bool = False, tail: int | None = None) -> Iterator[tuple[str, bytes]]:
        if follow or self._engine is not None:  # following waits on the monitor: the engine
            yield from self._full().logs(container, stdout=stdout, stderr=stderr,
                                         follow=follow, tail=tail)
            return
        from pytest_isobox.native.logs import read_log_timed

        log = os.path.join(self._containers, self._find(container), "log")
        for stream, _, data in read_log_timed(log, stdout=stdout, stderr=stderr, tail=tail):
            yield stream, data

    def inspect(self, container: str, *, size: bool = False) -> dict:
        """views.ViewsRole.inspect over the files (rootful: no limits plan to tell, as
        there); `size` (a walk of the writable layer) and any doubt go to the engine. A name
        that is no container is said so without it (inspect tries containers first, then
        images, networks, volumes)."""
        if self._engine is None:
            container = self._find(container)
            if not size:
                try:
                    return self._inspect(container)
                except _Unsure:
                    pass
        return self._full().inspect(container, size=size)

    def _inspect(self, cid: str) -> dict:
        from pytest_isobox.native.container_json import container_json

        st = self._state_of(cid)
        config = self._read(cid, "config.json")
        cdir = os.path.join(self._containers, cid)
        try:
            with open(os.path.join(cdir, "keeper.json"), "rb") as f:
                keeper = json.loads(f.read())  # keeper.read
        except (OSError, ValueError):
            keeper = {}
        raw = {**self._read(cid, "state.json"), **keeper}
        networks = {}
        for name in st.ips:
            if "/" in name or name.startswith("."):
                raise _Unsure
            record = self._network_record(os.path.join(self.home, "networks", "by-name",
                                                       f"{name}.json"))
            if record is None:
                raise _Unsure  # (the manager looks further: by id prefix)
            from pytest_isobox.native.network.records import network_info

            networks[name] = network_info(record)
        data = container_json(cid, config, raw, st, cdir=self._path_as_engine_has_it(cdir),
                              networks=networks)
        data["Isobox"] = {"Rootless": False, "Limits": "", "IdMapping": "", "Outbound": ""}
        return data

    def _path_as_engine_has_it(self, path: str) -> Any:
        """`path` as the engine's pathlib paths print: the same string unless the home is
        spelled with what pathlib folds (`//`, `/./`, a trailing slash)."""
        home = self.home
        if "//" in home or "/./" in home or home.endswith(("/", "/.")) or \
                home.startswith("./") or home == ".":
            from pathlib import Path

            return Path(path)
        return path

    # ------------------------------------------------------------ images
    def _image_store(self) -> Any:
        """The store NativeEngine.images_store opens (rootful: rootless never gets here)."""
        if self._store is None:
            from pathlib import Path

            from pytest_isobox.images.store import ImageStore

            self._store = ImageStore(Path(self.home))
        return self._store

    def _image_files(self) -> Any:
        """The store's files read without it (images/storereader.py)."""
        if self._store_files is None:
            from pytest_isobox.images.storereader import StoreReader

            self._store_files = StoreReader(self.home)
        return self._store_files

    def images(self) -> list[ImageInfo]:
        if self._engine is not None:
            return self._engine.images()
        from pytest_isobox.images.storereader import Unsure

        try:
            return self._image_files().images()
        except Unsure:
            return self._image_store().images()

    def image_inspect(self, ref: str) -> ImageInfo:
        """As images.ImagesRole.image_inspect."""
        return self._image(ref)[0]

    def _image(self, ref: str) -> tuple[ImageInfo, list[str]]:
        """The image `ref` names and its repo digests, from the files when they answer
        plainly, else from the store (whose error is the one raised)."""
        if self._engine is not None:
            return self._engine.image_inspect(ref), []
        from pytest_isobox.images.storereader import Unsure

        files = self._image_files()
        try:
            image_id = files.find(ref)
            return files.info(image_id), files.repo_digests(image_id)
        except Unsure:
            pass
        store = self._image_store()
        image = store.resolve(ref)
        return (ImageInfo(image.id, image.tags, image.config, image.size,
                          image.config.get("created")), store.repo_digests(image.id))

    def image_document(self, ref: str) -> dict:
        """As images.ImagesRole.image_document."""
        if self._engine is not None:
            return self._engine.image_document(ref)
        from pytest_isobox.engine import documents

        info, repo_digests = self._image(ref)
        return documents.image_document(info, repo_digests=repo_digests)

    # ------------------------------------------------------------ networks
    def networks(self) -> list[NetworkInfo]:
        """NetworkManager.list over network/store.py's files. The engine answers when the
        default network stands unused: its close removes it then (the next attach makes it
        again), and a read of the files alone would leave it."""
        if self._engine is not None:
            return self._engine.networks()
        from pytest_isobox.native.network.records import DEFAULT_NETWORK, network_info

        records = self._network_records()
        if any(r["name"] == DEFAULT_NETWORK and not r["members"] for r in records):
            return self._full().networks()
        return [network_info(r) for r in records]

    def _network_records(self) -> list[dict]:
        """NetworkStore.networks(): by-name/*.json in name order, each with its members
        (the records' own legacy ones, then members/<name>/*.json by address)."""
        root = os.path.join(self.home, "networks")
        records = []
        for path in _json_files(os.path.join(root, "by-name")):
            record = self._network_record(path)
            if record is not None:
                records.append(record)
        return records

    def _network_record(self, path: str) -> dict | None:
        """One network's record (NetworkStore.network), None if there is none."""
        record = _read_json(path)
        if record is None:
            return None
        legacy = record.get("members") or {}
        record["legacy_members"] = sorted(legacy)
        record["members"] = dict(legacy)
        folder = os.path.join(self.home, "networks", "members", record["name"])
        for member in filter(None, map(_read_json, _json_files(folder))):
            record["members"][member["id"]] = member
        return record

    # ------------------------------------------------------------ volumes
    def volumes(self) -> list[str]:
        if self._engine is not None:
            return self._engine.volumes()
        root = os.path.join(self.home, "volumes")
        return sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n, "_data")))

    # ------------------------------------------------------------ as the engine reads them
    def _ids(self) -> list[str]:
        try:
            return [n for n in os.listdir(self._containers) if not n.startswith(".")]
        except FileNotFoundError:
            return []

    def _find(self, ref: str) -> str:
        """A container's id by full id, name, or unique id prefix (ContainerStore.find)."""
        if ref and "/" not in ref and not ref.startswith("."):
            if os.path.exists(os.path.join(self._containers, ref, "config.json")):
                return ref
            try:
                by_name = os.readlink(os.path.join(self._containers, ".names", ref.lstrip("/")))
            except OSError:
                by_name = None
            if by_name and os.path.exists(os.path.join(self._containers, by_name,
                                                       "config.json")):
                return by_name
            matches = [c for c in self._ids() if c.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise ContainerNotFound(f"container reference {ref!r} is ambiguous")
        raise ContainerNotFound(f"no such container: {ref}")

    def _read(self, cid: str, name: str) -> dict:
        try:
            with open(os.path.join(self._containers, cid, name), "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise ContainerNotFound(f"no such container: {cid}") from None

    def _state_of(self, cid: str) -> ContainerState:
        """views.ViewsRole._state_of over the files; _Unsure where the engine would write."""
        cdir = os.path.join(self._containers, cid)
        config = self._read(cid, "config.json")
        state = self._read(cid, "state.json")
        if state.get("usage_pending") or (
                state.get("status") == "running" and state.get("needs_release")
                and os.path.exists(os.path.join(cdir, "exit"))):
            raise _Unsure  # the end is to be folded in (and written) by the engine
        status = state["status"]
        if status == "running" and not _alive(state.get("monitor")):
            status = "dead"
        elif status == "running" and self._frozen(cid):
            status = "paused"  # read from the freezer: pause writes no state
        try:
            with open(os.path.join(cdir, "name")) as f:
                name = f.read()
        except FileNotFoundError:
            name = config["name"]
        return container_state(cid, name, config, state, status, _health(cdir))

    def _frozen(self, cid: str) -> bool:
        """The cgroup freezer's word (a v1 freezer hierarchy's freezer.state, cgroup v2's
        cgroup.events), as the cgroup managers read it for `isobox/<id>`."""
        if self._freezers is None:
            self._freezers = _freezer_mounts()
        for kind, mountpoint in self._freezers:
            try:
                if kind == "v1":
                    with open(f"{mountpoint}/isobox/{cid}/freezer.state") as f:
                        if f.read().strip() == "FROZEN":
                            return True
                else:
                    with open(f"{mountpoint}/isobox/{cid}/cgroup.events") as f:
                        if "frozen 1" in f.read().splitlines():
                            return True
            except OSError:
                continue
        return False


def _read_json(path: str) -> Any:
    """network/store.read_json: the document, None if the file is not there."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def _json_files(folder: str) -> list[str]:
    """The paths of `folder`'s *.json, in name order (pathlib's sorted glob)."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [os.path.join(folder, n) for n in sorted(names) if n.endswith(".json")]


def _alive(raw: dict | None) -> bool:
    """processes.ProcessIdentity.load(raw).alive(), without the dataclass: the pid runs,
    is no zombie, and started at the recorded clock tick."""
    if not raw:
        return False
    pid, start = int(raw["pid"]), int(raw["start"])
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    fields = stat[stat.rindex(b")") + 2:].split()
    return fields[0] not in (b"Z", b"X") and int(fields[19]) == start


def container_state(cid: str, name: str, config: dict, state: dict, status: str,
                    health: str | None) -> ContainerState:
    """A container's record from its config.json and state.json, `status` as judged by the
    caller (the engine's views and this reader alike)."""
    return ContainerState(
        id=cid, name=name, image=config["image"], image_id=config["image_id"],
        status=status, pid=state.get("pid") if status in ("running", "paused") else None,
        exit_code=state.get("exit_code"), oom_killed=bool(state.get("oom_killed")),
        created_at=config["created"], started_at=state.get("started_at"),
        finished_at=state.get("finished_at"), ips=dict(state.get("ips") or {}),
        ports={k: [(h, int(p)) for h, p in v] for k, v in (state.get("ports") or {}).items()},
        labels=dict(config["spec"].get("labels") or {}),
        command=list(config.get("argv") or []), health=health,
    )


def _health(cdir: str) -> str | None:
    """The keeper's healthcheck status (keeper.json), as views._health reads it."""
    try:
        with open(os.path.join(cdir, "keeper.json"), "rb") as f:
            health = json.loads(f.read()).get("health")
    except (OSError, ValueError):
        return None
    return health.get("Status") if isinstance(health, dict) else None


def _freezer_mounts() -> list[tuple[str, str]]:
    """("v1", mountpoint) of each cgroup v1 hierarchy with the freezer, ("v2", mountpoint)
    of the unified one, from /proc/self/mountinfo."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mountpoint = fields[4].replace("\\040", " ")
        if tail[0] == "cgroup" and "freezer" in tail[2].split(","):
            found.append(("v1", mountpoint))
        elif tail[0] == "cgroup2":
            found.append(("v2", mountpoint))
    return found
