"""`shared=True` containers under xdist: started once per test run, removed after the last worker.

One registry file per test run (`<home>/plugin/shared/<testrunuid>.json`), changed only under
that run's file lock and rewritten atomically. The first worker to need a shared container
starts it (persistent, so it outlives that worker) while holding the lock, so the others wait
and attach to it by id. Each worker marks itself as left when its session ends; the last one
to leave removes every shared container of the run. The controller removes what is still
there when the run ends (a worker crashed), and a later run removes the containers of a run
whose controller died (kill -9).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_isobox.engine import Engine
    from pytest_isobox.plugin.session import IsoboxSession


def registry_path(home: Path, run_id: str) -> Path:
    """The run's registry file: it exists once some worker shared something."""
    return home / "plugin" / "shared" / f"{run_id}.json"


def controller_token() -> str:
    """Names this process so another can tell whether it still runs (pid and start time)."""
    from pytest_isobox.processes import ProcessIdentity

    return ProcessIdentity.current().token()


def token_alive(token: str) -> bool:
    """True while that process runs; a zombie (killed, not yet reaped) counts as dead."""
    from pytest_isobox.processes import ProcessIdentity

    owner = ProcessIdentity.parse(token)
    return owner is not None and owner.alive()


class SharedRegistry:
    """The shared containers of one test run, as seen by one worker."""

    def __init__(self, home: Path, run_id: str, worker_id: str, worker_count: int,
                 controller: str | None) -> None:
        from pytest_isobox.locks import HostLock

        self.path = registry_path(home, run_id)
        self.lock = HostLock(home / "locks" / f"shared-{run_id}.lock")
        self.worker_id = worker_id
        self.worker_count = worker_count
        self.controller = controller or controller_token()

    @classmethod
    def of(cls, session: IsoboxSession) -> SharedRegistry:
        return cls(session.home, session.run_id, session.worker_id, session.worker_count,
                   session.controller)

    def acquire(self, key: str, start: Callable[[], str | dict]) -> tuple[str, bool]:
        """The id of the run's container for key, started by `start` if no worker has yet
        (`start` may return a mapping with the id and what removing it takes)."""
        with self._locked() as doc:
            entry = doc["containers"].get(key)
            created = entry is None
            if created:
                made = start()
                entry = doc["containers"][key] = {
                    **(made if isinstance(made, dict) else {"id": made}), "users": []}
            entry["users"] = sorted({*entry["users"], self.worker_id})
            return entry["id"], created

    def leave(self, engine_factory: Callable[[], Engine]) -> list[str]:
        """This worker is done; the last to leave removes the run's shared containers."""
        if not self.path.exists():
            return []
        with self._locked() as doc:
            doc["left"] = sorted({*doc["left"], self.worker_id})
            if len(doc["left"]) < self.worker_count:
                return []
            return self._remove_all(doc, engine_factory())

    def finish(self, engine_factory: Callable[[], Engine]) -> list[str]:
        """The controller's end of run: remove whatever shared container is still there."""
        if not self.path.exists():
            return []
        with self._locked() as doc:
            return self._remove_all(doc, engine_factory()) if doc["containers"] else []

    @staticmethod
    def sweep_dead_runs(session: IsoboxSession, engine: Engine) -> list[str]:
        """Remove the shared containers of runs whose controller is gone; what was removed."""
        folder = session.home / "plugin" / "shared"
        removed: list[str] = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            registry = SharedRegistry(session.home, path.stem, session.worker_id, 1, None)
            with registry._locked() as doc:
                if doc.get("controller") and not token_alive(doc["controller"]):
                    removed += registry._remove_all(doc, engine)
        return removed

    def _remove_all(self, doc: dict, engine: Engine) -> list[str]:
        """Containers first, then the networks they were on; what was removed."""
        from pytest_isobox.engine import ContainerNotFound, NetworkNotFound

        removed = []
        for key, entry in sorted(doc["containers"].items()):
            kind, _, fixture = key.partition(":")
            try:
                if kind == "container":
                    engine.remove(entry["id"], force=True)
                elif kind == "compose":  # a shared compose() project, as it recorded itself
                    from pytest_isobox.compose.project import remove_recorded

                    remove_recorded(engine, entry)
                else:
                    engine.network_remove(entry["id"])
                removed.append(f"shared {kind} {fixture} ({entry['id'][:12]})")
            except (ContainerNotFound, NetworkNotFound):
                pass
        doc["containers"] = {}
        doc["done"] = True
        return removed

    def _locked(self) -> _LockedDoc:
        return _LockedDoc(self)


class _LockedDoc:
    """The registry document, read under the lock and written back (or deleted) on exit."""

    def __init__(self, registry: SharedRegistry) -> None:
        self.registry = registry
        self.doc: dict = {}
        self.existed = False

    def __enter__(self) -> dict:
        reg = self.registry
        reg.path.parent.mkdir(parents=True, exist_ok=True)
        reg.lock.__enter__()
        self.existed = reg.path.exists()
        try:
            self.doc = json.loads(reg.path.read_text()) if self.existed else {}
        except (OSError, ValueError):
            self.doc = {}
        self.doc.setdefault("controller", reg.controller)
        self.doc.setdefault("workers", reg.worker_count)
        self.doc.setdefault("left", [])
        self.doc.setdefault("containers", {})
        return self.doc

    def __exit__(self, *exc_info: object) -> None:
        reg = self.registry
        try:
            if self.doc.pop("done", False):
                reg.path.unlink(missing_ok=True)
            elif self.existed or self.doc["containers"]:
                tmp = reg.path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(self.doc))
                os.replace(tmp, reg.path)
        finally:
            reg.lock.__exit__(None, None, None)
