"""The sweep of dead owners' leftovers in one home, run by every new NativeEngine.

Guarantees: under one file lock per home; never touches a container whose owner (pid and
start time) still runs, nor a persistent container (it has no owner) except to free the
cgroup of one whose monitor died; a dead owner's monitor that is already removing its
containers is let finish. Cgroups of no container in this home go only when empty and older
than ORPHAN_CGROUP_AGE (another home may be starting one).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_isobox.locks import HostLock
from pytest_isobox.native.cgroups import current_layout, list_cgroups, open_cgroup
from pytest_isobox.native.state import ContainerDir, ContainerStore, remove_tree
from pytest_isobox.processes import ProcessIdentity

ORPHAN_CGROUP_AGE = 60.0  # seconds before a sweep may take an empty cgroup of no container
MONITOR_GRACE = 10.0  # seconds a dead owner's monitor gets to finish its own cleanup
OTHERS_INTERVAL = 10.0  # seconds between two opening sweeps of what other homes left


def others_due() -> bool:
    """Whether an engine opening now also sweeps what is not its home's own: cgroups of no
    container of its home, bridges of gone homes, and other homes' dead runs' networks (see
    `NetworkManager.sweep`). Host-wide at most once every OTHERS_INTERVAL seconds (a stamp
    file's time): these are only taken once old (ORPHAN_CGROUP_AGE) or abandoned, and
    looking at every home on every command cost each command milliseconds per home. Its
    own home's dead owners every engine sweeps. True when the stamp cannot be kept."""
    from pytest_isobox.native.network.store import host_registry_dir

    stamp = host_registry_dir().parent / "others-swept"
    try:
        if time.time() - stamp.stat().st_mtime < OTHERS_INTERVAL:
            return False
    except FileNotFoundError:
        pass
    except OSError:
        return True
    with contextlib.suppress(OSError):
        stamp.touch()
    return True


class Sweeper:
    """What one sweep needs from the engine: its store, how to release a container (cgroup,
    network, and with delete its directory), how to wait for a monitor, the networks."""

    def __init__(self, home: Path, store: ContainerStore,
                 release: Callable[[ContainerDir, bool], None],
                 wait_monitor: Callable[[dict, float, str], None], network: Any,
                 others: bool = True) -> None:
        self.home = home
        self.store = store
        self._release = release
        self._wait_monitor = wait_monitor
        self.network = network
        self.others = others  # what other homes left too (see `others_due`)

    def sweep(self, only: ProcessIdentity | None = None) -> list[str]:
        """One line per thing removed. `only` (the run reaper's): of the containers, only
        those of this dead process (and its half-created ones) are taken."""
        cleaned: list[str] = []
        (self.home / "locks").mkdir(exist_ok=True)
        with HostLock(self.home / "locks" / "container-sweep.lock"):
            for tmp in self.store.leftover_temp_dirs(only):
                remove_tree(tmp)
                cleaned.append(f"half-created container dir {tmp.name}")
            for doomed in self.store.leftover_trash():
                remove_tree(doomed)
                cleaned.append(f"half-deleted container dir {doomed.name}")
            live: set[str] = set()
            for cdir in list(self.store.all()):
                try:
                    line = self._sweep_one(cdir, only)
                except Exception as exc:  # noqa: BLE001 - one broken leftover stops no sweep
                    line = f"could not sweep container {cdir.id[:12]}: {exc}"
                if line:
                    cleaned.append(line)
                if cdir.exists():
                    live.add(cdir.id)
            for link in self.store.stale_names():
                link.unlink(missing_ok=True)
            if self.others:
                cleaned += self._sweep_cgroups(live)
            if self.network is not None:
                cleaned += self.network.sweep(live, other_homes=self.others)
        return cleaned

    def _sweep_one(self, cdir: ContainerDir, only: ProcessIdentity | None) -> str | None:
        config = cdir.config
        owner = ProcessIdentity.load(cdir.owner)
        if only is not None and owner != only:
            return None
        state = cdir.read_state()
        monitor = ProcessIdentity.load(state.get("monitor"))
        monitor_alive = monitor is not None and monitor.alive()
        if owner is None:  # persistent: only a dead one's cgroup and network go
            if state["status"] == "running" and not monitor_alive:
                self._release(cdir, delete=False)
                return f"cgroup of dead persistent container {cdir.id[:12]}"
            return None
        if owner.alive():
            return None
        if monitor_alive:  # it saw its owner die and is removing the container: let it finish
            try:
                self._wait_monitor(state, MONITOR_GRACE, cdir.id)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(monitor.pid, signal.SIGKILL)
        self._release(cdir, delete=True)
        return f"container {cdir.id[:12]} ({config['name']}) of dead process {owner.pid}"

    def _sweep_cgroups(self, live: set[str]) -> list[str]:
        return sweep_orphan_cgroups(lambda cid: cid in live or (self.store.root / cid).exists())


def sweep_orphan_cgroups(known: Callable[[str], bool], min_age: float = ORPHAN_CGROUP_AGE
                         ) -> list[str]:
    """Cgroups named isobox/<id> of no `known` container go only when empty and older than
    `min_age`: a container of another home has processes, or is being started (its cgroup
    is seconds old); a dead one's processes died with it (a spare's too)."""
    cleaned = []
    layout = current_layout()
    roots = [h.mountpoint for h in layout.v1.values()]
    roots += [layout.unified.mountpoint] if layout.unified is not None else []
    for name in list_cgroups("isobox"):
        cid = name.partition("/")[2]
        if known(cid):
            continue
        if time.time() - _newest_mtime([root / name for root in roots]) < min_age:
            continue
        cgroup = open_cgroup(name)
        with contextlib.suppress(Exception):
            if not cgroup.procs():
                cgroup.destroy()
                cleaned.append(f"empty cgroup {name}")
    with contextlib.suppress(Exception):  # the shared parents, when idle
        open_cgroup("isobox/parent").prune_parents()
    return cleaned




def _newest_mtime(paths: list[Path]) -> float:
    times = []
    for path in paths:
        with contextlib.suppress(OSError):
            times.append(path.stat().st_mtime)
    return max(times, default=time.time())
