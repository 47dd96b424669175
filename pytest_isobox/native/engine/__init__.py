"""`NativeEngine`: the embedded, daemonless implementation of the `Engine` protocol.

Containers are started by forking a monitor from this (already loaded) process: no daemon, no
interpreter start, no subprocess per step. State lives on disk under `<home>/containers/`, so
every operation (state, stop, logs, exec, remove) works from any process, and persistent
containers outlive the process that made them. Non-persistent containers die with their owner;
`NativeEngine()` sweeps every leftover of dead owners and never touches a live run's.

Images delegate to `images.store.ImageStore`, networks to `network.manager.NetworkManager`,
builds to `builder.builder.Builder`. As a convenience (like Podman's `--rootfs`), an image given
as an absolute path to a directory runs that directory as the only, read-only, layer.

The class is a facade: its state and life (open, close, sweep) are here, its verbs in one
role module each (images, lifecycle, launch, views, execs, archives, networks, volumes).
"""

from __future__ import annotations

import collections
import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pytest_isobox.engine import EngineUnavailable
from pytest_isobox.engine.protocol import OPTIONAL_CAPABILITIES
from pytest_isobox.homes import default_home
from pytest_isobox.native.engine.archives import ArchivesRole
from pytest_isobox.native.engine.events import EventsRole
from pytest_isobox.native.engine.execs import ExecRole
from pytest_isobox.native.engine.images import ImagesRole
from pytest_isobox.native.engine.launch import LaunchRole
from pytest_isobox.native.engine.lifecycle import LifecycleRole
from pytest_isobox.native.engine.networks import NetworksRole
from pytest_isobox.native.engine.streams import StreamsRole
from pytest_isobox.native.engine.updates import UpdatesRole
from pytest_isobox.native.engine.views import ViewsRole
from pytest_isobox.native.engine.volumes import VolumesRole
from pytest_isobox.native.prerequisites import check_prerequisites
from pytest_isobox.native.reaping import finish_home, reap_home
from pytest_isobox.native.rootless import is_rootless
from pytest_isobox.native.state import ContainerStore
from pytest_isobox.native.volumes import VolumeStore
from pytest_isobox.processes import ProcessIdentity
from pytest_isobox.reaper import RunReaper

if TYPE_CHECKING:  # (imported where used: a read-only verb never pays for them)
    from pytest_isobox.native.engine.support import ShimSpare
    from pytest_isobox.native.monitor import MonitorHandle, Spare
    from pytest_isobox.native.rootless.mode import RootlessMode


class NativeEngine(EventsRole, ImagesRole, LifecycleRole, LaunchRole, ViewsRole, ExecRole,
                   ArchivesRole, NetworksRole, VolumesRole, StreamsRole, UpdatesRole):
    """Containers made by this process with namespaces, overlayfs and cgroups (root only)."""

    name = "native"
    capabilities = OPTIONAL_CAPABILITIES

    def __init__(self, home: str | Path | None = None, *, rootless: bool | None = None,
                 limits: str = "strict", pull: str | None = None, read_only: bool = False,
                 sweep_for: ProcessIdentity | None = None,
                 finish_in_reaper: bool = False, spares: bool = True,
                 shim_at_create: bool = False) -> None:
        """`rootless` None: rootless unless root. `limits` "strict": a container asking for
        limits that rootless mode cannot apply fails; "best-effort": it runs without them.
        `pull` (default $ISOBOX_PULL, else "missing"): when images named by containers and
        FROM are pulled from their registry (see `ensure_image`). `read_only`: this process
        only looks (ps, inspect, logs, ...): no sweep at open and no cgroup pruning at close,
        which every engine that creates does; what a dead run left stays visible as dead.
        `sweep_for` (the run reaper's): the opening sweep takes only what that dead process
        left. `finish_in_reaper` (the CLI's, the plugin's): `close` leaves what it would wait
        for (veths and an unused default bridge going away, some 25-100 ms of the kernel's)
        to the run reaper, which finishes it while this process goes on or exits: nothing of
        ours remains once the process and its reaper are gone. `spares` False: no monitor,
        shim or rootless network agent is made ahead for a next container (a CLI `run` makes
        one and exits: a spare would only be spawned, on the container's CPU, and discarded
        at close). `shim_at_create` (the CLI `run`'s, which starts what it creates): `create`
        spawns the container's own shim at once, so that its move into the cgroup (on cgroup
        v1 an RCU grace period, some 5 ms) and its exec overlap the rest of create and start
        instead of preceding the start."""
        from pytest_isobox.images.registry.policy import PullPolicy

        self.pull_policy = PullPolicy(pull)
        self.home = Path(home) if home else default_home()
        self._rootless: RootlessMode | None = None
        if is_rootless(rootless):
            from pytest_isobox.native.rootless.mode import RootlessMode

            self._rootless = RootlessMode(self.home, limits)
        else:
            from pytest_isobox.native.rootless import check_mode as check_limits_mode
            from pytest_isobox.native.rootless.store import check_owner as check_store_owner

            check_prerequisites()
            check_limits_mode(limits)
            check_store_owner(self.home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = ContainerStore(self.home)
        self.read_only = read_only
        if self._rootless is None and not read_only:  # (rootless: a helper deletes, inside)
            self.store.delete_in_background()
        self.volume_store = VolumeStore(self.home, self._volume_users)
        self.runtime_dir = self.home / "runtime"
        self.runtime_dir.mkdir(exist_ok=True)
        self._me = ProcessIdentity.current()
        self._shim: str | None | bool = False  # the compiled isobox-shim; False: not looked up
        self._monitors: dict[str, MonitorHandle] = {}
        self._spare: Spare | None = None  # the next container's monitor, forked ahead
        self._agent: Any = None  # rootless: the next shim container's network agent
        self._agent_maker: Any = None  # rootless: what forks those agents
        self._pool: collections.deque[ShimSpare] = collections.deque()  # shims, spawned ahead
        self._pool_batch = 1  # how many shims the next refill spawns (see _refill_pool)
        self._pool_refilled = 0.0
        self._pool_thread: threading.Thread | None = None  # spawning the next batch
        self._pool_ready = threading.Condition()
        self._reserved: dict[str, Spare] = {}  # created containers with a spare waiting
        self._exit_codes: dict[str, int] = {}
        self._images: Any = None
        self._network: Any = None
        self._network_checked = False
        self._image_cache: dict[str, tuple[dict, list[str]]] = {}
        self._resolv_conf: str | None = None
        rootless_home = self._rootless is not None
        self._reaper = RunReaper(self._me, lambda owner: reap_home(self.home, limits, owner,
                                                                   rootless_home),
                                 finish=lambda work: finish_home(self.home, work))
        self._finish_in_reaper = finish_in_reaper and not rootless_home
        self._spares = spares
        self._shim_at_create = shim_at_create
        self.swept: list[str] = [] if read_only else self.sweep(sweep_for, opening=True)

    @property
    def network(self) -> Any:
        """The NetworkManager, or None while the networking code is absent."""
        if not self._network_checked:
            self._network_checked = True
            try:
                from pytest_isobox.native.network.manager import NetworkManager
            except ImportError:
                return None
            self._network = self._rootless.network_manager(self.home) if self._rootless \
                else NetworkManager(self.home)
        return self._network

    def _network_manager(self) -> Any:
        manager = self.network
        if manager is None:
            raise EngineUnavailable("native networking is not available in this installation")
        return manager

    def close(self) -> None:
        """Remove the non-persistent containers this process made; reap their monitors."""
        for cdir in list(self.store.all()):
            with contextlib.suppress(Exception):  # a container removed meanwhile is fine
                if ProcessIdentity.load(cdir.owner) == self._me:
                    self.remove(cdir.id, force=True)
        self._join_pool()
        for spare in [*self._reserved.values(), *((self._spare,) if self._spare else ()),
                      *self._pool]:
            spare.discard()
        self._pool.clear()
        self._reserved.clear()
        if self._agent is not None:  # never used: it ends now, with its holder connection
            self._agent.close(wait=5.0)
            self._agent = None
        if self._agent_maker is not None:
            self._agent_maker.close()
            self._agent_maker = None
        self._spare = None
        if self._rootless is None and not self.read_only:
            from pytest_isobox.native.cgroups import open_cgroup

            with contextlib.suppress(Exception):  # the shared cgroup parents, when idle
                open_cgroup("isobox/parent").prune_parents()
        for handle in self._monitors.values():  # persistent ones run on: reap only the ended
            handle.close()
            handle.reap()
        self._monitors.clear()
        handed: dict = {}
        if self._network is not None:
            if self._finish_in_reaper:
                work = self._network.hand_off()
                if work["default_network"] or any(work["links"].values()):
                    handed["network"] = work
            else:
                self._network.close()
        if self._rootless is not None:
            self._rootless.close()
        self.store.drain()
        if handed and self._reaper.pid is None:  # (`rm` made nothing, yet a veth is going:
            with contextlib.suppress(OSError):  # a reaper waits for it, not this command)
                self._reaper.ensure()
        if not handed:
            self._reaper.close()  # everything is released: nothing left for it to do
        elif not self._reaper.hand_over(handed):  # (it is gone: this process does it)
            finish_home(self.home, handed)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def rootless(self) -> bool:
        return self._rootless is not None

    def sweep(self, only: ProcessIdentity | None = None, *, opening: bool = False
              ) -> list[str]:
        """Remove every leftover of dead owners in this home (see `sweep.Sweeper`), or only
        those of the dead process `only`; one line per thing cleaned. `opening` (the sweep
        of a new engine): what other homes left, only when due (`sweep.others_due`)."""
        from pytest_isobox.native.network.store import host_has_networks
        from pytest_isobox.native.sweep import Sweeper, others_due

        others = not opening or only is not None or others_due()
        # a home without networks of its own still cleans those abandoned homes left
        own = (self.home / "networks").exists()
        network = self.network if own or (
            others and self._rootless is None and host_has_networks()) else None
        return Sweeper(self.home, self.store, self._release, self._wait_monitor,
                       network, others).sweep(only)

    def _own_resources(self) -> None:
        """Before this process makes its first container, network, build or pull: the run
        reaper, which cleans up what is left if this process dies (see pytest_isobox/reaper.py)."""
        self._reaper.ensure(before_fork=self._join_pool)

