"""`NativeEngine`: the embedded, daemonless implementation of the `Engine` protocol.

Containers are started by forking a monitor from this (already loaded) process: no daemon, no
interpreter start, no subprocess per step. State lives on disk under `<home>/containers/`, so
every operation (state, stop, logs, exec, remove) works from any process, and persistent
containers outlive the process that made them. Non-persistent containers die with their owner;
`NativeEngine()` sweeps every leftover of dead owners and never touches a live run's.

Images delegate to `images.store.ImageStore`, networks to `network.manager.NetworkManager`,
builds to `build.builder.Builder`. As a convenience (like Podman's `--rootfs`), an image given
as an absolute path to a directory runs that directory as the only, read-only, layer.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import io
import json
import os
import re
import secrets
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, Self

from pytest_isobox.engine import (
    BuildStep,
    ConflictError,
    ContainerError,
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineUnavailable,
    ExecResult,
    ImageInfo,
    ImageNotFound,
    InvalidSpec,
    LogStream,
    MountSpec,
    NetworkInfo,
)
from pytest_isobox.native import linux, mounts, seccomp, shim
from pytest_isobox.native.cgroups import (
    Limits,
    cgroup_path_for_ns,
    check_available,
    open_cgroup,
)
from pytest_isobox.native.container_json import container_json
from pytest_isobox.native.logs import read_log
from pytest_isobox.native.monitor import (
    CgroupHooks,
    Hooks,
    MonitorHandle,
    Spare,
    Terminal,
    spawn_monitor,
    spawn_spare,
)
from pytest_isobox.native.rootless.agent import NetworkAgent
from pytest_isobox.native.rootless.limits import check_mode as check_limits_mode
from pytest_isobox.native.rootless.mode import RootlessMode
from pytest_isobox.native.rootless.store import check_owner as check_store_owner
from pytest_isobox.native.rootless.userns import is_rootless
from pytest_isobox.native.runtime import (
    ContainerPlan,
    ProcessPlan,
    check_ulimits,
    exec_init,
    exit_code_of,
    receive_console,
)
from pytest_isobox.native.specs import (
    command_line,
    env_dict,
    signal_number,
    spec_from_dict,
    spec_to_dict,
)
from pytest_isobox.native.state import ContainerDir, ContainerStore, ProcessIdentity
from pytest_isobox.native.sweep import Sweeper
from pytest_isobox.native.terminal import (
    WindowChangeForwarder,
    copy_window_size,
    raw_terminal,
    relay_pty,
)
from pytest_isobox.native.volumes import VolumeStore

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_SPECIAL_NETWORKS = ("none", "host")
_LOCALHOST = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
              "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
              "ff02::2\tip6-allrouters\n")
_FALLBACK_DNS = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"  # Docker's, when the host has none
TINI_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/bin/tini")
STOP_GRACE = 10.0  # seconds to wait after SIGKILL for the monitor to record the exit
POOL_MAX = 8  # shims spawned ahead at most (each: two sleeping processes and empty cgroups)
POOL_BURST = 1.0  # s: a pool emptied again this soon doubles the next batch
POOL_QUIET = 10.0  # s: a pool emptied after this long starts again from one


def default_home() -> Path:
    """ISOBOX_HOME, else $XDG_CACHE_HOME/isobox, else ~/.cache/isobox."""
    if os.environ.get("ISOBOX_HOME"):
        return Path(os.environ["ISOBOX_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "isobox"


def check_prerequisites() -> None:
    """Raise EngineUnavailable naming the first missing prerequisite of the rootful engine."""
    if os.geteuid() != 0:
        raise EngineUnavailable(
            f"the rootful native engine needs root (running as uid {os.geteuid()}); "
            "leave rootless mode on (the default for users) to run without root")
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        raise EngineUnavailable("/proc is not mounted: cannot check for overlayfs") from None
    if not re.search(r"\boverlay\b", filesystems):
        raise EngineUnavailable("overlayfs is not available (no 'overlay' in /proc/filesystems; "
                                "try `modprobe overlay`)")
    if not hasattr(os, "pidfd_open"):
        raise EngineUnavailable("this Python lacks os.pidfd_open (needs Linux 5.3+)")


class NativeEngine:
    """Containers made by this process with namespaces, overlayfs and cgroups (root only)."""

    name = "native"

    def __init__(self, home: str | Path | None = None, *, rootless: bool | None = None,
                 limits: str = "strict", pull: str | None = None) -> None:
        """`rootless` None: rootless unless root. `limits` "strict": a container asking for
        limits that rootless mode cannot apply fails; "best-effort": it runs without them.
        `pull` (default $ISOBOX_PULL, else "missing"): when images named by containers and
        FROM are pulled from their registry (see `ensure_image`)."""
        from pytest_isobox.images.registry.policy import PullPolicy

        self.pull_policy = PullPolicy(pull)
        self.home = Path(home) if home else default_home()
        self._rootless: RootlessMode | None = None
        if is_rootless(rootless):
            self._rootless = RootlessMode(self.home, limits)
        else:
            check_prerequisites()
            check_limits_mode(limits)
            check_store_owner(self.home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = ContainerStore(self.home)
        if self._rootless is None:  # (rootless: a forked helper deletes, in the namespace)
            self.store.delete_in_background()
        self.volume_store = VolumeStore(self.home, self._volume_users)
        self.runtime_dir = self.home / "runtime"
        self.runtime_dir.mkdir(exist_ok=True)
        self._me = ProcessIdentity.current()
        self._shim: str | None | bool = False  # the compiled isobox-shim; False: not looked up
        self._monitors: dict[str, MonitorHandle] = {}
        self._spare: Spare | None = None  # the next container's monitor, forked ahead
        self._pool: collections.deque[_ShimSpare] = collections.deque()  # shims, spawned ahead
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
        self.swept: list[str] = self.sweep()

    # ------------------------------------------------------------------ helpers

    @property
    def images_store(self) -> Any:
        if self._images is None:
            from pytest_isobox.images.store import ImageStore

            self._images = self._rootless.image_store(self.home) if self._rootless \
                else ImageStore(self.home)
        return self._images

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
                if ProcessIdentity.load(cdir.config.get("owner")) == self._me:
                    self.remove(cdir.id, force=True)
        self._join_pool()
        for spare in [*self._reserved.values(), *((self._spare,) if self._spare else ()),
                      *self._pool]:
            spare.discard()
        self._pool.clear()
        self._reserved.clear()
        self._spare = None
        if self._rootless is None:
            with contextlib.suppress(Exception):  # the shared cgroup parents, when idle
                open_cgroup("isobox/parent").prune_parents()
        for handle in self._monitors.values():  # persistent ones run on: reap only the ended
            handle.close()
            handle.reap()
        self._monitors.clear()
        if self._network is not None:
            self._network.close()
        if self._rootless is not None:
            self._rootless.close()
        self.store.drain()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cgroup(self, cid: str) -> Any:
        if self._rootless is not None:
            return self._rootless.cgroup(f"isobox/{cid}")
        return open_cgroup(f"isobox/{cid}")

    @property
    def rootless(self) -> bool:
        return self._rootless is not None

    def _limits_plan(self, spec: ContainerSpec) -> tuple[Limits, str]:
        """The limits a container gets and, rootless, one line saying which were applied."""
        limits = self._limits(spec)
        if self._rootless is None:
            return limits, ""
        plan = self._rootless.plan_limits(limits)
        return plan.applied, plan.summary() if limits.controllers() else ""

    def _resolve_image(self, ref: str) -> tuple[str, dict, list[str]]:
        """(image id, runtime config, lower dirs top first) of an image ref or rootfs dir."""
        if ref.startswith("/"):
            path = Path(ref)
            if not path.is_dir():
                raise ImageNotFound(f"rootfs directory {ref} does not exist")
            image_id = "sha256:" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()
            return image_id, {}, [str(path.resolve())]
        image = self.images_store.resolve(self.ensure_image(ref))
        cached = self._image_cache.get(image.id)
        if cached is None:
            lowers = [str(p) for p in reversed(self.images_store.layer_dirs(image.id))]
            cached = (image.config.get("config") or {}, lowers)
            self._image_cache[image.id] = cached
        return image.id, cached[0], list(cached[1])

    def _host_resolv_conf(self) -> str:
        if self._resolv_conf is None:
            try:
                lines = Path("/etc/resolv.conf").read_text().splitlines(keepends=True)
            except OSError:
                lines = []
            kept = [ln for ln in lines
                    if not re.match(r"\s*nameserver\s+(127\.|::1\s*$)", ln)]
            if not any(ln.strip().startswith("nameserver") for ln in kept):
                kept.append(_FALLBACK_DNS)
            self._resolv_conf = "".join(kept)
        return self._resolv_conf

    def _find(self, ref: str) -> ContainerDir:
        return self.store.find(ref)

    # ------------------------------------------------------------------ images

    def build(self, context: str | Path, *, dockerfile: str | None = None,
              tag: str | None = None, buildargs: dict[str, str] | None = None,
              target: str | None = None, no_cache: bool = False, network: str | None = None,
              on_step: Callable[[BuildStep], None] | None = None) -> str:
        from pytest_isobox.build.builder import Builder

        builder = Builder(engine=self, cache_dir=self.home / "buildcache")
        return builder.build(context, dockerfile=dockerfile, tag=tag, buildargs=buildargs,
                             target=target, no_cache=no_cache, network=network, on_step=on_step)

    def import_rootfs(self, source: str | Path, ref: str) -> str:
        return self.images_store.import_rootfs(source, ref)

    def pull(self, ref: str, progress: Callable[[str, str, int, int], None] | None = None
             ) -> str:
        """Pull `ref` from its registry now (whatever the policy); returns the image id."""
        image_id = self.images_store.pull(ref, progress or self.pull_policy.progress)
        self.pull_policy.pulled(ref)
        return image_id

    def bootstrap(self, name: str, *, variant: str = "minbase", include: list[str] | None = None,
                  tag: str | None = None, log: Callable[[str], None] | None = None) -> str:
        """A Debian base image made by debootstrap from this machine's apt mirror (cached
        by its inputs; see images.bootstrap); returns its id."""
        from pytest_isobox.images.bootstrap import bootstrap

        return bootstrap(self.images_store, name, variant=variant, include=include, tag=tag,
                         log=log)

    def ensure_image(self, ref: str) -> str:
        """The image id for `ref`, pulled first as the pull policy says: "missing" pulls an
        image not stored, "always" pulls once per engine (then uses the store), "never" and
        ISOBOX_OFFLINE=1 never touch the network. ImageNotFound names the image."""
        return self.pull_policy.ensure(ref, self.images_store, self.pull)

    def image_inspect(self, ref: str) -> ImageInfo:
        image = self.images_store.resolve(ref)
        return ImageInfo(image.id, image.tags, image.config, image.size,
                         image.config.get("created"))

    def images(self) -> list[ImageInfo]:
        return self.images_store.images()

    def tag(self, ref: str, new_ref: str) -> None:
        self.images_store.tag(ref, new_ref)

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        self.images_store.remove(ref, force=force, in_use=self._images_in_use())

    def save_images(self, refs: list[str], path: str | Path) -> None:
        self.images_store.save(refs, path)

    def load_images(self, path: str | Path) -> list[str]:
        return self.images_store.load(path)

    def commit(self, container: str, *, config: dict | None = None, created_by: str = "",
               remove: bool = False) -> str:
        """A new image: the container's image plus its upper dir as one layer. With `remove`
        (a stopped container), the upper dir itself becomes the layer's unpacked copy instead
        of being unpacked again from the new blob, and the container is removed."""
        cdir = self._find(container)
        image_id = cdir.config["image_id"]
        if cdir.config["image"].startswith("/"):
            raise InvalidSpec(f"cannot commit container {cdir.id[:12]}: its image is the plain "
                              f"directory {cdir.config['image']}; import it first")
        if config is None:
            config = self.images_store.resolve(image_id).config.get("config") or {}
        take = remove and self._read_state(cdir)["status"] != "running"
        if take:
            self._reap(cdir.id)  # its monitor has ended: nothing mounts the upper dir now
        image = self.images_store.commit(image_id, cdir.upper, config, created_by,
                                         **({"take_upper": True} if take else {}))
        if remove:
            self.remove(cdir.id, force=True)
        return image

    def derive_image(self, base: str | None, *, config: dict, created_by: str,
                     author: str | None = None) -> str:
        """A new image: base's layers (none for scratch) with a new runtime config."""
        return self.images_store.commit(base, None, config, created_by, author=author)

    def _images_in_use(self) -> set[str]:
        return {cdir.config["image_id"] for cdir in self.store.all()}

    def prune(self) -> int:
        return self.images_store.prune(in_use=self._images_in_use())

    def disk_usage(self) -> dict[str, dict]:
        usage = self.images_store.disk_usage()
        containers = list(self.store.all())
        volumes = self.volumes()
        cache = self.home / "buildcache"
        return {
            "Images": {"count": usage["images"]["count"],
                       "size": usage["images"]["size"] + usage["layers"]["size"],
                       "per_image": usage.get("per_image", [])},
            "Containers": {"count": len(containers),
                           "size": sum(_tree_size(c.upper) for c in containers)},
            "Volumes": {"count": len(volumes),
                        "size": sum(_tree_size(self.volume_store.path(v)) for v in volumes)},
            "Build Cache": {"count": len(list(cache.iterdir())) if cache.is_dir() else 0,
                            "size": _tree_size(cache)},
        }

    # ------------------------------------------------------------------ containers: life

    def create(self, spec: ContainerSpec) -> ContainerState:
        if spec.name is not None and not _NAME.fullmatch(spec.name):
            raise InvalidSpec(f"invalid container name {spec.name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-]"
                              " are allowed")
        image_id, image_config, lowerdirs = self._resolve_image(spec.image)
        limits, _ = self._limits_plan(spec)
        check_ulimits(spec.ulimits)
        if self._rootless is None:
            check_available(limits)
        if spec.networks or spec.network_mode not in _SPECIAL_NETWORKS:
            self._network_manager()
        if not self._pool:
            self._wait_pool()  # a batch on its way: its first shim is soon ready
        if self._pool:
            spare = self._pool.popleft()
        else:
            spare, self._spare = self._spare, None
        cid = spare.cid if spare is not None else secrets.token_hex(32)
        try:
            state = self._create(spec, cid, image_id, image_config, lowerdirs)
        except BaseException:
            if spare is not None:
                spare.discard()
            raise
        if spare is not None:
            self._reserved[cid] = spare
        return state

    def _create(self, spec: ContainerSpec, cid: str, image_id: str, image_config: dict,
                lowerdirs: list[str]) -> ContainerState:
        resolved_mounts = [asdict(m) for m in self._resolve_mounts(spec.mounts)]
        argv = command_line(image_config, spec)
        env = env_dict(list(image_config.get("Env") or []))
        env.update(spec.env)
        name = spec.name or f"isobox_{cid[:12]}"
        host_network = spec.network_mode == "host" and not spec.networks
        hostname = spec.hostname or (os.uname().nodename if host_network else cid[:12])
        user = spec.user if spec.user is not None else (image_config.get("User") or "")
        stop_signal = spec.stop_signal or image_config.get("StopSignal") or "SIGTERM"
        signal_number(stop_signal)
        now = time.time()
        config = {
            "id": cid, "name": name, "created": now, "image": spec.image, "image_id": image_id,
            "lowerdirs": lowerdirs, "argv": argv, "env": env, "user": user,
            "workdir": spec.working_dir or image_config.get("WorkingDir") or "/",
            "hostname": hostname, "stop_signal": stop_signal, "mounts": resolved_mounts,
            "spec": spec_to_dict(spec), "image_config": image_config,
            "owner": None if spec.persistent else self._me.dump(),
        }
        state = {"status": "created", "exit_code": 0, "oom_killed": False, "pid": None,
                 "started_at": None, "finished_at": None, "ips": {}, "ports": {}, "error": ""}

        def populate(tmp: ContainerDir) -> None:
            hosts = Path("/etc/hosts").read_text() if host_network else _LOCALHOST
            tmp.hosts.write_text(hosts)
            tmp.hostname.write_text(hostname + "\n")
            tmp.resolv_conf.write_text(self._host_resolv_conf())
            tmp.log.touch(mode=0o640)  # followers may open it before the monitor writes

        cdir = self.store.create(cid, name, config, state, populate)
        return self._state_of(cdir, state)

    def _limits(self, spec: ContainerSpec) -> Limits:
        return Limits(memory=spec.mem_limit, cpus=spec.cpus, cpu_shares=spec.cpu_shares,
                      pids=spec.pids_limit)

    def _resolve_mounts(self, specs: list[MountSpec]) -> list[mounts.ResolvedMount]:
        resolved = []
        for m in specs:
            if not m.target.startswith("/"):
                raise InvalidSpec(f"invalid mount target {m.target!r}: must be an absolute path")
            if m.type == "bind":
                if not os.path.exists(m.source):
                    raise InvalidSpec(f"bind source path does not exist: {m.source}")
                resolved.append(mounts.ResolvedMount("bind", m.target, os.path.abspath(m.source),
                                                     m.read_only))
            elif m.type == "volume":
                if not m.source:
                    raise InvalidSpec(f"volume mount at {m.target} needs a volume name")
                self.volume_create(m.source)
                resolved.append(mounts.ResolvedMount("bind", m.target,
                                                     str(self.volume_store.path(m.source)),
                                                     m.read_only))
            elif m.type == "tmpfs":
                resolved.append(mounts.ResolvedMount("tmpfs", m.target, "", m.read_only, m.size))
            else:
                raise InvalidSpec(f"invalid mount type {m.type!r}: expected bind, tmpfs or volume")
        return resolved

    def _plan(self, cdir: ContainerDir, tty: bool) -> ContainerPlan:
        config = cdir.config
        spec = config["spec"]
        init_binary = None
        if spec["init"]:
            init_binary = next((p for p in TINI_CANDIDATES if os.path.exists(p)), None)
            if init_binary is None:
                raise EngineUnavailable("init=True needs tini: none of "
                                        f"{', '.join(TINI_CANDIDATES)} exists")
        argv = list(config["argv"])
        if init_binary:
            argv = [mounts.INIT_PATH, "--", *argv]
        init_layer = mounts.ensure_init_layer(self.runtime_dir)
        host_network = spec["network_mode"] == "host" and not spec["networks"]
        uses_manager = not host_network and (spec["networks"] or spec["network_mode"] != "none")
        return ContainerPlan(
            id=cdir.id, rootfs=str(cdir.rootfs),
            lowerdirs=[str(init_layer), *config["lowerdirs"]],
            upper=str(cdir.upper), work=str(cdir.work), hostname=config["hostname"],
            process=ProcessPlan(argv=argv, env=config["env"], workdir=config["workdir"],
                                user=config["user"], tty=tty,
                                rlimits=dict(config["spec"].get("ulimits") or {})),
            etc_files={"/etc/hosts": str(cdir.hosts), "/etc/hostname": str(cdir.hostname),
                       "/etc/resolv.conf": str(cdir.resolv_conf)},
            mounts=[mounts.ResolvedMount(**m) for m in config["mounts"]],
            init_binary=init_binary, new_netns=not host_network,
            loopback_up=not host_network and not uses_manager,
            cgroup_ns=self._rootless is None
            and cgroup_path_for_ns(f"isobox/{cdir.id}") is not None,
            rootless=self._rootless is not None,
            seccomp=seccomp.filter_for(list(spec.get("security_opt") or ())),
            no_new_privs=seccomp.no_new_privs(list(spec.get("security_opt") or ())),
        )

    def _hooks(self, cdir: ContainerDir, plan: ContainerPlan) -> Hooks:
        cid = cdir.id
        cgroup = self._cgroup(cid)
        config = cdir.config
        spec = spec_from_dict(config["spec"])
        limits, _ = self._limits_plan(spec)
        attach = agent = None
        if plan.new_netns and not plan.loopback_up:
            manager = self._network_manager()

            def attach(pid: int) -> tuple[dict, dict]:
                result = manager.attach(cid, config["name"], config["hostname"], pid, spec,
                                        cdir.hosts)
                return result.ips, result.ports

            if self._rootless is not None:  # wired by an agent the monitor forks first
                agent = NetworkAgent(attach)
                attach = agent.attach

        def final_usage() -> dict:
            stats = cgroup.stats()
            return {"oom_killed": cgroup.oom_killed(), "memory_peak": stats.memory_peak,
                    "cpu_time_ns": stats.cpu_time_ns}

        def release(delete: bool) -> None:
            if agent is not None:
                agent.stop()
            self._release(cdir, delete)

        def enter_userns() -> None:
            self._rootless.enter()
            if agent is not None:
                agent.start(self._rootless.fds())

        def join_cgroup(pid: int) -> None:
            try:
                cgroup.add(pid)
            except (EngineUnavailable, ContainerError, OSError):  # removed while still empty
                cgroup.create(limits)
                cgroup.add(pid)

        return Hooks(create_cgroup=lambda: cgroup.create(limits), join_cgroup=join_cgroup,
                     kill_cgroup=cgroup.kill_all, final_usage=final_usage,
                     attach_network=attach, release=release,
                     enter_userns=enter_userns if self._rootless else None,
                     has_limits=bool(limits.controllers()))

    def _release(self, cdir: ContainerDir, delete: bool) -> None:
        """Give back the container's cgroup and network; with delete, its directory too.

        Rootless, this runs in the user namespace, where the files of mapped ids and the
        helper network namespace are ours."""
        if self._rootless is not None and not self._rootless.inside():
            self._rootless.run(self._release, cdir, delete)
            return
        if not delete:  # an exit the shim recorded unwatched, and the usage, before they go
            with contextlib.suppress(Exception):
                self._usage_of(cdir, self._read_state(cdir))
        self._cgroup(cdir.id).destroy()
        try:
            spec = cdir.config["spec"]
        except Exception:  # noqa: BLE001 - the directory is gone: nothing of it to read
            spec = {"networks": [1], "network_mode": "bridge"}
        if (spec["networks"] or spec["network_mode"] not in _SPECIAL_NETWORKS) \
                and self.network is not None:
            self.network.detach(cdir.id)
        if delete:
            self.store.delete(cdir)
        else:
            with contextlib.suppress(Exception):  # a shim's container: released now
                state = cdir.read_state()
                if state.pop("needs_release", None):
                    cdir.write_state(state)

    def start(self, container: str) -> ContainerState:
        return self._start(self._find(container), None)

    def _start(self, cdir: ContainerDir, terminal: Terminal | None) -> ContainerState:
        state = self._read_state(cdir)
        if state["status"] == "running" and self._monitor_alive(state):
            return self._state_of(cdir, state)
        self._reap(cdir.id)
        if state.get("needs_release"):  # a restart: the last run's network and cgroup go first
            self._release(cdir, delete=False)
        spec = cdir.config["spec"]
        spare = self._reserved.pop(cdir.id, None)
        if terminal is None and (isinstance(spare, _ShimSpare)
                                 or (spare is None and self._shim_binary() is not None)):
            plan = self._plan(cdir, spec["tty"])
            if shim.eligible(plan):
                return self._start_shim(cdir, plan, state, spare)
        if isinstance(spare, _ShimSpare):
            spare.discard()
            spare = None
        self._join_pool()  # the Python monitor is a fork of this process
        if spare is not None and terminal is None:
            try:
                plan = self._plan(cdir, spec["tty"])
            except BaseException:
                spare.discard()
                raise
            handle = spare.launch(plan)
        else:
            if spare is not None:
                spare.discard()
            plan = self._plan(cdir, spec["tty"])
            owner = ProcessIdentity.load(cdir.config["owner"])
            handle = spawn_monitor(plan, cdir, self._hooks(cdir, plan), owner,
                                   spec["auto_remove"], terminal)
        self._fork_spare()  # while the monitor starts this one: the two overlap
        event = handle.next_event()
        if event is None or event["event"] != "started":
            handle.close()
            os.waitpid(handle.pid, 0)
            message = event["message"] if event else "the container's monitor died at start"
            raise ContainerError(f"cannot start container {cdir.id[:12]}: {message}")
        self._monitors[cdir.id] = handle
        return self._state_of(cdir, event["state"])

    def _shim_binary(self) -> str | None:
        if self._shim is False:
            self._shim = None if self._rootless is not None else shim.binary(shim.build_dir())
        return self._shim  # type: ignore[return-value]

    def _spawn_shim(self, cid: str, limits: Limits) -> _ShimSpare:
        """A shim for `cid` whose container process is in its cgroup, waiting for the plan."""
        cgroup = self._cgroup(cid)
        cgroup.create(limits)
        try:
            handle = shim.spawn(self._shim_binary(), cid, cgroup.procs_files(),
                                os.pidfd_open(os.getpid()))
        except BaseException:
            cgroup.destroy()
            raise
        return _ShimSpare(cid, handle, cgroup)

    def _start_shim(self, cdir: ContainerDir, plan: ContainerPlan, state: dict,
                    spare: _ShimSpare | None) -> ContainerState:
        """Start with isobox-shim: the engine attaches the network itself while the container
        process waits for it, and records the start; the shim records the exit."""
        config = cdir.config
        spec = spec_from_dict(config["spec"])
        limits, _ = self._limits_plan(spec)
        network = plan.new_netns and not plan.loopback_up
        try:
            if spare is None:
                spare = self._spawn_shim(cdir.id, limits)
            elif limits.controllers():  # the spare's cgroup was made before its limits were known
                spare.cgroup.create(limits)
            blob = shim.encode_plan(plan, log=str(cdir.log), exit_file=str(cdir.path / "exit"),
                                    persistent=config["owner"] is None, network=network)
        except BaseException:
            if spare is not None:
                spare.discard()
            raise
        with contextlib.suppress(FileNotFoundError):  # a restart's previous exit
            (cdir.path / "exit").unlink()
        handle = spare.handle
        handle.send_plan(blob)
        if not network:
            self._fork_spare()  # while the container sets up: the two overlap
        ips: dict = {}
        ports: dict = {}
        try:
            while True:
                event = handle.next_event()
                if event is None:
                    raise _StartError(127, "the container's shim died at start")
                if event["event"] == "ready":
                    result = self._network_manager().attach(
                        cdir.id, config["name"], config["hostname"], event["pid"], spec,
                        cdir.hosts)
                    ips, ports = result.ips, result.ports
                    handle.go()
                    self._fork_spare()  # after the network: it is on the container's path
                elif event["event"] == "failed":
                    raise _StartError(event["exit_code"], event["message"])
                elif event["event"] == "started":
                    break
        except BaseException as exc:
            handle.close()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(handle.pid, 0)
            code, message = (exc.code, exc.message) if isinstance(exc, _StartError) \
                else (127, str(exc))
            state.update(status="created", exit_code=code, error=message)
            with contextlib.suppress(Exception):
                cdir.write_state(state)
            self._release(cdir, delete=False)
            if isinstance(exc, _StartError):
                raise ContainerError(f"cannot start container {cdir.id[:12]}: {message}") from None
            raise
        pid = event["pid"]
        monitor = ProcessIdentity.of(handle.pid)
        state.update(status="running", pid=pid, pid_start=linux.process_start_time(pid) or 0,
                     monitor=monitor.dump() if monitor else None,
                     started_at=time.time(), exit_code=0, oom_killed=False, finished_at=None,
                     error="", needs_release=True, ips=ips,
                     ports={k: [list(b) for b in v] for k, v in ports.items()})
        cdir.write_state(state)
        self._monitors[cdir.id] = handle
        return self._state_of(cdir, state)

    @staticmethod
    def _with_exit(state: dict, status: int, finished_at: float) -> dict:
        """`state` with the shim's record of the exit folded in. It reaches state.json when
        the container is released; the cgroup's final usage (OOM kill, peak memory, CPU
        time) is read only when someone asks (`_usage_of`) or before the cgroup goes: a run
        that is only waited for and removed never pays for either."""
        if state.get("status") == "running":
            state.update(status="exited", exit_code=exit_code_of(status),
                         finished_at=finished_at, usage_pending=True)
        return state

    def _usage_of(self, cdir: ContainerDir, state: dict) -> dict:
        """`state` with the final usage read from the still existing cgroup, once."""
        if not state.get("usage_pending"):
            return state
        cgroup = self._cgroup(cdir.id)
        with contextlib.suppress(Exception):  # the exit stays recorded without usage figures
            stats = cgroup.stats()
            state.update(oom_killed=cgroup.oom_killed(), memory_peak=stats.memory_peak,
                         cpu_time_ns=stats.cpu_time_ns)
        state.pop("usage_pending")
        with contextlib.suppress(Exception):
            cdir.write_state(state)
        return state

    def _read_state(self, cdir: ContainerDir) -> dict:
        """state.json, with the exit the shim recorded (if the container has ended) folded in."""
        state = cdir.read_state()
        if state.get("status") == "running" and state.get("needs_release"):
            recorded = shim.read_exit(cdir.path / "exit")
            if recorded is not None:
                state = self._with_exit(state, *recorded)
        return state

    def _refill_pool(self) -> None:
        """Spawn shims for the next containers when none is left, several at once when
        containers come fast, from a thread (mkdir and posix_spawn release the GIL), so the
        engine goes on with the container it is starting. Each shim moves its waiting
        process into its new cgroup; on cgroup v1 the first such move after a quiet spell
        waits for an RCU grace period (milliseconds, during which every fork on the machine
        waits too), while moves close together share one: a burst of containers pays that
        once per batch."""
        if self._pool or (self._pool_thread is not None and self._pool_thread.is_alive()):
            return
        now = time.monotonic()
        if now - self._pool_refilled < POOL_BURST:
            self._pool_batch = min(self._pool_batch * 2, POOL_MAX)
        elif now - self._pool_refilled > POOL_QUIET:
            self._pool_batch = 1
        self._pool_refilled = now
        cids = [secrets.token_hex(32) for _ in range(self._pool_batch)]
        self._pool_thread = threading.Thread(target=self._spawn_pool, args=(cids,),
                                             name="isobox-shim-pool", daemon=True)
        self._pool_thread.start()

    def _spawn_pool(self, cids: list[str]) -> None:
        try:
            with contextlib.suppress(Exception):  # a start without a spare spawns its own
                for cid in cids:
                    spare = self._spawn_shim(cid, Limits())
                    with self._pool_ready:
                        self._pool.append(spare)
                        self._pool_ready.notify_all()
        finally:
            with self._pool_ready:
                self._pool_ready.notify_all()

    def _wait_pool(self) -> None:
        """Wait for the first shim of the batch being spawned, if any."""
        thread = self._pool_thread
        if thread is None:
            return
        with self._pool_ready:
            while not self._pool and thread.is_alive():
                self._pool_ready.wait(timeout=1.0)

    def _join_pool(self) -> None:
        """Wait for the batch being spawned: before a fork, which must not copy a process
        whose other thread is mid-way through anything."""
        if self._pool_thread is not None:
            self._pool_thread.join()
            self._pool_thread = None

    def _fork_spare(self) -> None:
        """Have the next container's monitor ready, its process already in its cgroup."""
        if self._spare is not None or self._rootless is not None:
            return  # (rootless: a spare would need the user namespace before its plan)
        if self._shim_binary() is not None:
            self._refill_pool()
            return
        cid = secrets.token_hex(32)
        cgroup = self._cgroup(cid)

        def prepare(plan: ContainerPlan) -> tuple[ContainerDir, Hooks, ProcessIdentity | None,
                                                  bool]:
            cdir = self._find(cid)
            return (cdir, self._hooks(cdir, plan), ProcessIdentity.load(cdir.config["owner"]),
                    cdir.config["spec"]["auto_remove"])

        def destroy_if_unused() -> None:  # another process may have started the container
            if not cgroup.procs():
                cgroup.destroy()

        self._spare = spawn_spare(cid, prepare, CgroupHooks(
            create=lambda: cgroup.create(Limits()), join=cgroup.add, destroy=destroy_if_unused),
            self._me)

    def run(self, spec: ContainerSpec) -> ContainerState:
        state = self.create(spec)
        try:
            return self.start(state.id)
        except BaseException:
            with contextlib.suppress(Exception):
                self.remove(state.id, force=True)
            raise

    def wait(self, container: str, timeout: float | None = None) -> int:
        """The container's exit code once it has exited; TimeoutError after `timeout` s.

        An auto-removed container's code stays known to the process that ran it."""
        handle = self._monitors.get(container)
        cdir = None
        if handle is None:
            try:
                cdir = self._find(container)
            except ContainerNotFound:
                if container in self._exit_codes:
                    return self._exit_codes[container]
                raise
            handle = self._monitors.get(cdir.id)
        cid = cdir.id if cdir else container
        if handle is not None:
            return self._wait_own(cid, handle, timeout)
        assert cdir is not None
        state = self._read_state(cdir)
        if state["status"] == "created":
            raise ContainerError(f"container {cid[:12]} has not been started")
        if state["status"] == "running":
            self._wait_monitor(state, timeout, cid)
            with contextlib.suppress(Exception):
                state = cdir.read_state()
        return int(state.get("exit_code") or 0)

    def _wait_own(self, cid: str, handle: MonitorHandle, timeout: float | None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while handle.exited is None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            event = handle.next_event(remaining)
            if event is None:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"container {cid[:12]} still runs after {timeout} s")
                break
        code = handle.exited["exit_code"] if handle.exited else None  # (a shim's: in its file)
        if code is None:
            with contextlib.suppress(Exception):
                code = self._find(cid).read_state().get("exit_code")
        code = 137 if code is None else int(code)
        self._exit_codes[cid] = code
        with contextlib.suppress(Exception):
            cdir = self._find(cid)
            if cdir.config["spec"]["auto_remove"]:
                self.remove(cid, force=True)
        return code

    def _monitor_alive(self, state: dict) -> bool:
        monitor = ProcessIdentity.load(state.get("monitor"))
        return monitor is not None and monitor.alive()

    def _wait_monitor(self, state: dict, timeout: float | None, cid: str) -> None:
        """Block until the container's monitor has ended (it records the exit first)."""
        monitor = ProcessIdentity.load(state.get("monitor"))
        if monitor is None:
            return
        try:
            fd = os.pidfd_open(monitor.pid)
        except ProcessLookupError:
            return
        try:
            if not monitor.alive():
                return
            if not select.select([fd], [], [], timeout)[0]:
                raise TimeoutError(f"container {cid[:12]} still runs after {timeout} s")
        finally:
            os.close(fd)

    def _reap(self, cid: str) -> None:
        handle = self._monitors.pop(cid, None)
        if handle is not None:
            handle.close()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(handle.pid, 0)

    def _container_pidfd(self, state: dict) -> int | None:
        """A pidfd on the container's PID 1 if it still runs (checked by its start time)."""
        pid, start = state.get("pid"), state.get("pid_start")
        if not pid or state.get("status") != "running":
            return None
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        if linux.process_start_time(pid) != start:
            os.close(fd)
            return None
        return fd

    def stop(self, container: str, timeout: float | None = None) -> None:
        """Stop signal, up to `timeout` s (default the spec's) for the exit, then SIGKILL."""
        cdir = self._find(container)
        state = self._read_state(cdir)
        fd = self._container_pidfd(state)
        if fd is None:
            self._settle(cdir)
            return
        if timeout is None:
            timeout = cdir.config["spec"]["stop_timeout"]
        try:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal_number(cdir.config["stop_signal"]))
            if not select.select([fd], [], [], timeout)[0]:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)
        self._settle(cdir)

    def _settle(self, cdir: ContainerDir) -> None:
        """Wait until the monitor has recorded the exit (it does right after the exit); a
        shim's container then gives back its network and cgroup, as the Python monitor's does."""
        if cdir.id in self._monitors:
            self._wait_own(cdir.id, self._monitors[cdir.id], STOP_GRACE)
            if getattr(self._monitors.get(cdir.id), "is_shim", False):
                self._reap(cdir.id)
                self._release_exited(cdir)
            return
        with contextlib.suppress(ContainerNotFound, TimeoutError):
            state = cdir.read_state()
            if state["status"] == "running":
                self._wait_monitor(state, STOP_GRACE, cdir.id)

    def _release_exited(self, cdir: ContainerDir) -> None:
        state = self._read_state(cdir)
        if state.get("needs_release") and state.get("status") != "running":
            self._release(cdir, delete=False)

    def kill(self, container: str, signal: str = "SIGKILL") -> None:
        cdir = self._find(container)
        state = self._read_state(cdir)
        fd = self._container_pidfd(state)
        if fd is None:
            raise ContainerError(f"container {cdir.id[:12]} is not running")
        try:
            number = signal_number(signal)
            with contextlib.suppress(ProcessLookupError):
                _send(fd, number)
        finally:
            os.close(fd)

    def remove(self, container: str, *, force: bool = False) -> None:
        cdir = self._find(container)
        if cdir.id in self._reserved:
            self._reserved.pop(cdir.id).discard()
        state = self._read_state(cdir)
        if state["status"] == "running" and self._monitor_alive(state):
            if not force:
                raise ConflictError(
                    f"you cannot remove a running container {cdir.id}: stop the container "
                    "before attempting removal or force remove")
            fd = self._container_pidfd(state)
            if fd is not None:
                with contextlib.suppress(ProcessLookupError):
                    _send(fd, 9)
                os.close(fd)
            self._settle(cdir)
        self._reap(cdir.id)
        monitor = ProcessIdentity.load(cdir.read_state().get("monitor"))
        if monitor is not None and monitor.alive():  # finishing its release; wait for it
            with contextlib.suppress(TimeoutError):
                self._wait_monitor({"monitor": monitor.dump()}, STOP_GRACE, cdir.id)
        self._release(cdir, delete=True)

    # ------------------------------------------------------------------ containers: views

    def _state_of(self, cdir: ContainerDir, state: dict) -> ContainerState:
        state = self._usage_of(cdir, state)
        config = cdir.config
        status = state["status"]
        if status == "running" and not self._monitor_alive(state):
            status = "dead"
        return ContainerState(
            id=cdir.id, name=config["name"], image=config["image"], image_id=config["image_id"],
            status=status, pid=state.get("pid") if status == "running" else None,
            exit_code=state.get("exit_code"), oom_killed=bool(state.get("oom_killed")),
            created_at=config["created"], started_at=state.get("started_at"),
            finished_at=state.get("finished_at"), ips=dict(state.get("ips") or {}),
            ports={k: [(h, int(p)) for h, p in v] for k, v in (state.get("ports") or {}).items()},
            labels=dict(config["spec"].get("labels") or {}),
        )

    def state(self, container: str) -> ContainerState:
        cdir = self._find(container)
        handle = self._monitors.get(cdir.id)
        if handle is not None and handle.reap():
            self._monitors.pop(cdir.id).close()
        return self._state_of(cdir, self._read_state(cdir))

    def inspect(self, container: str) -> dict:
        """Docker's container JSON, for the fields this engine knows."""
        cdir = self._find(container)
        st = self.state(cdir.id)
        data = container_json(cdir.id, cdir.config, self._usage_of(cdir, self._read_state(cdir)),
                              st)
        data["Isobox"] = {  # ours, not Docker's: rootless mode, the limits held, the id map
            "Rootless": self._rootless is not None,
            "Limits": self._limits_plan(spec_from_dict(cdir.config["spec"]))[1],
            "IdMapping": self._rootless.note if self._rootless else "",
            "Outbound": getattr(self._rootless, "outbound_note", "") if self._rootless else "",
        }
        return data

    def containers(self, *, all: bool = False) -> list[ContainerState]:
        found = []
        for cdir in self.store.all():
            with contextlib.suppress(Exception):  # removed meanwhile
                st = self._state_of(cdir, self._read_state(cdir))
                if all or st.running:
                    found.append(st)
        return sorted(found, key=lambda s: s.created_at or 0, reverse=True)

    def logs(self, container: str, *, stdout: bool = True, stderr: bool = True,
             follow: bool = False, tail: int | None = None) -> Iterator[tuple[LogStream, bytes]]:
        cdir = self._find(container)
        monitor_fd = None
        if follow:
            monitor = ProcessIdentity.load(cdir.read_state().get("monitor"))
            if monitor is not None:
                with contextlib.suppress(ProcessLookupError):
                    monitor_fd = os.pidfd_open(monitor.pid)
                if monitor_fd is not None and not monitor.alive():
                    os.close(monitor_fd)
                    monitor_fd = None
        try:
            yield from read_log(cdir.log, stdout=stdout, stderr=stderr, follow=follow,
                                tail=tail, monitor_fd=monitor_fd)
        finally:
            if monitor_fd is not None:
                os.close(monitor_fd)

    def stats(self, container: str) -> ContainerStats:
        cdir = self._find(container)
        state = self._read_state(cdir)
        if state["status"] == "running" and self._monitor_alive(state):
            s = self._cgroup(cdir.id).stats()
            return ContainerStats(s.memory_current, s.memory_peak, s.cpu_time_ns, s.pids)
        return ContainerStats(0, int(state.get("memory_peak") or 0),
                              int(state.get("cpu_time_ns") or 0), 0)

    # ------------------------------------------------------------------ exec

    def _exec_target(self, container: str) -> tuple[ContainerDir, int]:
        cdir = self._find(container)
        state = self._read_state(cdir)
        fd = self._container_pidfd(state)
        if fd is None:
            raise ContainerError(f"container {cdir.id[:12]} is not running")
        os.close(fd)
        return cdir, state["pid"]

    def _exec_process(self, cdir: ContainerDir, cmd: list[str], env: dict[str, str] | None,
                      user: str | None, workdir: str | None, tty: bool) -> ProcessPlan:
        if not cmd:
            raise InvalidSpec("exec needs a command")
        config = cdir.config
        merged = dict(config["env"])
        merged.update(env or {})
        return ProcessPlan(argv=list(cmd), env=merged, workdir=workdir or config["workdir"],
                           user=config["user"] if user is None else user, tty=tty,
                           create_workdir=False,
                           rlimits=dict(config["spec"].get("ulimits") or {}))

    def _fork_exec(self, cdir: ContainerDir, pid: int, process: ProcessPlan,
                   stdio: tuple[int, int, int], error_w: int,
                   console: socket.socket | None = None) -> int:
        self._join_pool()  # no fork while another thread works
        cgroup = self._cgroup(cdir.id)
        security_opt = list(cdir.config["spec"].get("security_opt") or ())
        seccomp_filter = seccomp.filter_for(security_opt)  # the container's, as Docker does
        no_new_privs = seccomp.no_new_privs(security_opt)
        child = os.fork()
        if child == 0:
            try:
                linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
                exec_init(pid, process, stdio, error_w, cgroup.add, console, seccomp_filter,
                          no_new_privs)
            finally:
                os._exit(127)
        return child

    def exec(self, container: str, cmd: list[str], *, env: dict[str, str] | None = None,
             user: str | None = None, workdir: str | None = None) -> ExecResult:
        """Run `cmd` in the running container (its namespaces and cgroup), collect output.

        A command that cannot be started gives exit code 126/127 and the reason on stderr.
        """
        cdir, pid = self._exec_target(container)
        process = self._exec_process(cdir, cmd, env, user, workdir, tty=False)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        error_r, error_w = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            child = self._fork_exec(cdir, pid, process, (null, out_w, err_w), error_w)
        finally:
            for fd in (out_w, err_w, error_w, null):
                os.close(fd)
        outputs = _collect({out_r: bytearray(), err_r: bytearray(), error_r: bytearray()})
        _, status = os.waitpid(child, 0)
        code = exit_code_of(status)
        failure = bytes(outputs[error_r])
        stderr = bytes(outputs[err_r])
        if failure:
            text = failure.decode(errors="replace").partition("\n")[2]
            stderr += f"{text}\n".encode()
        return ExecResult(code, bytes(outputs[out_r]), stderr)

    def exec_attached(self, container: str, cmd: list[str], *, tty: bool, stdin: bool,
                      env: dict[str, str] | None = None, user: str | None = None,
                      workdir: str | None = None) -> int:
        """`exec -i/-t`: the process talks to this process's terminal (a pty when tty)."""
        cdir, pid = self._exec_target(container)
        process = self._exec_process(cdir, cmd, env, user, workdir, tty=tty)
        error_r, error_w = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        console = child_console = None
        if tty:  # the process makes its terminal from the container's devpts, sends the master
            console, child_console = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            stdio = (null, null, null)
        else:
            stdio = (0 if stdin else null, 1, 2)
        try:
            child = self._fork_exec(cdir, pid, process, stdio, error_w, child_console)
        finally:
            os.close(error_w)
            os.close(null)
            if child_console is not None:
                child_console.close()
        if console is not None:
            master = receive_console(console)
            console.close()
            if master is not None:
                copy_window_size((0, 1), master)
                with raw_terminal():
                    relay_pty(master, stdin)
                os.close(master)
        failure = _read_to_end(error_r)
        os.close(error_r)
        _, status = os.waitpid(child, 0)
        if failure:
            sys.stderr.write(failure.decode(errors="replace").partition("\n")[2] + "\n")
        return exit_code_of(status)

    def run_attached(self, spec: ContainerSpec) -> int:
        """`run -i/-t`: start with this process's terminal relayed, wait, return the exit code.

        The terminal is put in raw mode meanwhile (when it is one), so keys reach the
        container; the container's terminal takes its size and follows it: the monitor
        copies the size on SIGWINCH, which we pass on (a persistent container's monitor has
        a session of its own, so the terminal never signals it)."""
        state = self.create(spec)
        terminal = Terminal(stdin=0 if spec.stdin_open else None, stdout=1, stderr=2)
        try:
            with (raw_terminal() if spec.tty else contextlib.nullcontext(),
                  WindowChangeForwarder(spec.tty) as resizes):
                cdir = self._find(state.id)
                self._start(cdir, terminal)
                resizes.to(self._monitors[cdir.id].pid)
                return self.wait(state.id)
        finally:
            if spec.auto_remove:
                with contextlib.suppress(Exception):
                    self.remove(state.id, force=True)

    # ------------------------------------------------------------------ archives

    def put_archive(self, container: str, path: str, data: bytes | IO[bytes]) -> None:
        """Extract a tar into directory `path` of the container; never outside its root."""
        from pytest_isobox.images.tarsafe import extract_into

        payload = data if isinstance(data, bytes) else data.read()
        self._in_rootfs(self._find(container),
                        lambda root: extract_into(root, path, io.BytesIO(payload)))

    def get_archive(self, container: str, path: str) -> bytes:
        """A tar of `path` in the container, named from its basename (`docker cp`)."""
        from pytest_isobox.images.tarsafe import archive_path

        return self._in_rootfs(self._find(container), lambda root: archive_path(root, path))

    def _in_rootfs(self, cdir: ContainerDir, action: Callable[[Path], bytes | None]) -> bytes:
        """Run `action(root)` on the container's root: the live one of a running container,
        else its overlay mounted in a short-lived private mount namespace (a forked child)."""
        state = cdir.read_state()
        fd = self._container_pidfd(state)
        if fd is not None:
            os.close(fd)
            root = Path(f"/proc/{state['pid']}/root")
            if self._rootless is not None:  # files of mapped ids: handled as root inside
                return self._rootless.run(action, root) or b""
            return action(root) or b""
        plan = self._plan(cdir, tty=False)
        result_r, result_w = os.pipe2(os.O_CLOEXEC)
        self._join_pool()  # no fork while another thread works
        child = os.fork()
        if child == 0:
            code = 1
            try:
                os.close(result_r)
                if self._rootless is not None:
                    self._rootless.enter()
                linux.unshare(linux.CLONE_NEWNS)
                mounts.make_mounts_private()
                mounts.mount_overlay(plan.lowerdirs, plan.upper, plan.work, plan.rootfs,
                                     userxattr=plan.rootless)
                try:
                    out = b"\0" + (action(Path(plan.rootfs)) or b"")
                except Exception as exc:  # noqa: BLE001 - sent back to the parent
                    out = b"\1" + json.dumps([type(exc).__name__, str(exc)]).encode()
                with open(result_w, "wb", closefd=False) as f:
                    f.write(out)
                code = 0
            finally:
                os._exit(code)
        os.close(result_w)
        out = _read_to_end(result_r)
        os.close(result_r)
        os.waitpid(child, 0)
        if not out:
            raise ContainerError(f"cannot mount the filesystem of container {cdir.id[:12]}")
        if out[:1] == b"\1":
            kind, message = json.loads(out[1:])
            if kind in ("InvalidSpec", "UnsafeArchiveEntry"):
                raise InvalidSpec(message)
            raise ContainerError(message)
        return out[1:]

    # ------------------------------------------------------------------ networks

    def network_create(self, name: str, *, subnet: str | None = None,
                       labels: dict[str, str] | None = None) -> NetworkInfo:
        return self._network_manager().create(name, subnet=subnet, labels=labels)

    def network_remove(self, name: str) -> None:
        if self._rootless is not None:  # its bridge is in the user namespace's helper netns
            self._rootless.run(self._network_manager().remove, name)
        else:
            self._network_manager().remove(name)

    def network_inspect(self, name: str) -> NetworkInfo:
        return self._network_manager().inspect(name)

    def networks(self) -> list[NetworkInfo]:
        return self._network_manager().list()

    # ------------------------------------------------------------------ volumes

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

    def volumes(self) -> list[str]:
        return self.volume_store.names()

    # ------------------------------------------------------------------ leftovers

    def sweep(self) -> list[str]:
        """Remove every leftover of dead owners in this home (see `sweep.Sweeper`); one line
        per thing cleaned."""
        from pytest_isobox.native.network.store import host_has_networks

        # a home without networks of its own still cleans those abandoned homes left
        own = (self.home / "networks").exists()
        network = self.network if own or (self._rootless is None and host_has_networks()) \
            else None
        return Sweeper(self.home, self.store, self._release, self._wait_monitor,
                       network).sweep()


def _send(pidfd: int, number: int) -> None:
    signal.pidfd_send_signal(pidfd, number)


def _tree_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _collect(buffers: dict[int, bytearray]) -> dict[int, bytearray]:
    """Read every fd to its end (they close when the writer exits)."""
    open_fds = set(buffers)
    while open_fds:
        for fd in select.select(list(open_fds), [], [])[0]:
            chunk = os.read(fd, 65536)
            if chunk:
                buffers[fd] += chunk
            else:
                open_fds.discard(fd)
                os.close(fd)
    return buffers


def _read_to_end(fd: int) -> bytes:
    data = bytearray()
    while chunk := os.read(fd, 65536):
        data += chunk
    return bytes(data)


class _ShimSpare:
    """A shim spawned ahead for container `cid`, its process already in the cgroup."""

    def __init__(self, cid: str, handle: shim.ShimHandle, cgroup: Any) -> None:
        self.cid, self.handle, self.cgroup = cid, handle, cgroup

    def discard(self) -> None:
        self.handle.discard()
        with contextlib.suppress(Exception):
            if not self.cgroup.procs():
                self.cgroup.destroy()


class _StartError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
