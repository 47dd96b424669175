"""A container's life on disk and in the kernel: create (state dir, plan, limits), wait,
stop, kill, release (cgroup, network) and remove. State transitions are recorded through
ContainerDir (state.py); starting is the launch role's."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_isobox.engine import (
    ConflictError,
    ContainerError,
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    EngineUnavailable,
    InvalidSpec,
    MountSpec,
)
from pytest_isobox.engine.records import as_dict, replace
from pytest_isobox.native.engine.support import (
    FALLBACK_DNS,
    LOCALHOST_HOSTS,
    NAME_PATTERN,
    STOP_GRACE,
    TINI_CANDIDATES,
    send_signal,
)
from pytest_isobox.native.specs import (
    command_line,
    env_dict,
    network_kind,
    signal_number,
    spec_from_dict,
    spec_to_dict,
)
from pytest_isobox.native.state import ContainerDir, mark_exited
from pytest_isobox.polling import readable
from pytest_isobox.processes import ProcessIdentity

if TYPE_CHECKING:  # (imported where used: read-only verbs never pay for them)
    from pytest_isobox.native import mounts
    from pytest_isobox.native.cgroups import Limits
    from pytest_isobox.native.monitor import Hooks, MonitorHandle
    from pytest_isobox.native.runtime import ContainerPlan


class LifecycleRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    def create(self, spec: ContainerSpec) -> ContainerState:
        from pytest_isobox.native import privileges
        from pytest_isobox.native.cgroups import check_available
        from pytest_isobox.native.runtime import check_ulimits

        if spec.name is not None and not NAME_PATTERN.fullmatch(spec.name):
            raise InvalidSpec(f"invalid container name {spec.name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-]"
                              " are allowed")
        _check_options(spec)
        self._own_resources()
        image_id, image_config, lowerdirs = self._resolve_image(spec.image)
        self._spawn_own_shim()
        if spec.publish_all:  # -P: every exposed port on a free loopback port
            from pytest_isobox import dockerargs

            spec = replace(spec, ports=dockerargs.publish_all_ports(
                dockerargs.exposed_ports(image_config, spec.expose), spec.ports))
        limits, _ = self._limits_plan(spec)
        check_ulimits(spec.ulimits)
        if spec.cap_add or spec.cap_drop or spec.devices:  # (what the check reads)
            privileges.check({"cap_add": spec.cap_add, "cap_drop": spec.cap_drop,
                              "privileged": spec.privileged,
                              "devices": [as_dict(d) for d in spec.devices]})
        if self._rootless is None:
            check_available(limits)
        if network_kind(spec) == "managed":
            self._network_manager()
        if not self._pool:
            self._wait_pool()  # a batch on its way: its first shim is soon ready
        if self._pool:
            spare = self._pool.popleft()
        else:
            spare, self._spare = self._spare, None
        if spare is None and self._shim_at_create and not spec.tty \
                and not (spec.persistent and spec.auto_remove) \
                and self._shim_binary() is not None:  # (what `_start` gives a shim)
            spare = self._spawn_shim(os.urandom(32).hex(), limits,
                                     network_kind(spec) == "host")
        cid = spare.cid if spare is not None else os.urandom(32).hex()
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
        from pytest_isobox.native import anonymous_volumes

        given = anonymous_volumes.unnamed(spec.mounts)  # `--mount type=volume,target=T`
        if given:
            spec = replace(spec, mounts=[
                replace(m, source=given[m.target]) if m.target in given and m.type == "volume"
                else m for m in spec.mounts])
        image_volumes = anonymous_volumes.needed(image_config, spec.mounts)
        anonymous = {**given, **image_volumes}
        if anonymous:  # the image's VOLUMEs no mount covers: new volumes, filled as Docker does
            spec = replace(spec, mounts=[*spec.mounts, *(
                MountSpec("volume", target, name) for target, name in image_volumes.items())])
            for target, name in anonymous.items():
                anonymous_volumes.fill(self.volume_store.path(self.volume_create(name)),
                                       lowerdirs, target)
        try:
            return self._create_with(spec, cid, image_id, image_config, lowerdirs,
                                     list(anonymous.values()))
        except BaseException:
            for name in anonymous.values():
                with contextlib.suppress(Exception):
                    self.volume_store.remove(name, force=True)
            raise

    def _create_with(self, spec: ContainerSpec, cid: str, image_id: str, image_config: dict,
                     lowerdirs: list[str], anonymous: list[str]) -> ContainerState:
        resolved_mounts = [as_dict(m) for m in self._resolve_mounts(spec.mounts)]
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
            "anonymous_volumes": anonymous,  # removed with the container
        }
        state = {"status": "created", "exit_code": 0, "oom_killed": False, "pid": None,
                 "started_at": None, "finished_at": None, "ips": {}, "ports": {}, "error": ""}

        def populate(tmp: ContainerDir) -> None:
            from pytest_isobox.native.network import hosts as hosts_file

            hosts = Path("/etc/hosts").read_text() if host_network else LOCALHOST_HOSTS
            extra = hosts_file.extra_entries(spec.extra_hosts, "127.0.0.1")
            tmp.hosts.write_text(hosts + hosts_file.render(extra, localhost=False))
            tmp.hostname.write_text(hostname + "\n")
            tmp.resolv_conf.write_text(resolv_conf(self._host_resolv_conf(), spec))
            tmp.log.touch(mode=0o640)  # followers may open it before the monitor writes

        cdir = self.store.create(cid, name, config, state, populate)
        return self._state_of(cdir, state, brief=True)  # (just created)

    def _limits(self, spec: ContainerSpec) -> Limits:
        from pytest_isobox.native import privileges
        from pytest_isobox.native.cgroups import Limits

        return Limits(memory=spec.mem_limit, cpus=spec.cpus, cpu_shares=spec.cpu_shares,
                      pids=spec.pids_limit, devices=privileges.device_rules(
                          {"privileged": spec.privileged,
                           "devices": [as_dict(d) for d in spec.devices]}))

    def _limits_plan(self, spec: ContainerSpec) -> tuple[Limits, str]:
        """The limits a container gets and, rootless, one line saying which were applied."""
        limits = self._limits(spec)
        if self._rootless is None:
            return limits, ""
        plan = self._rootless.plan_limits(limits)
        return plan.applied, plan.summary() if limits.controllers() else ""

    def _resolve_mounts(self, specs: list[MountSpec]) -> list[mounts.ResolvedMount]:
        from pytest_isobox.native import mounts

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
        from pytest_isobox.native import mounts, privileges, seccomp
        from pytest_isobox.native.cgroups import cgroup_path_for_ns
        from pytest_isobox.native.runtime import ContainerPlan, ProcessPlan

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
        kind = network_kind(spec)
        return ContainerPlan(
            id=cdir.id, rootfs=str(cdir.rootfs),
            lowerdirs=[str(init_layer), *config["lowerdirs"]],
            upper=str(cdir.upper), work=str(cdir.work), hostname=config["hostname"],
            process=ProcessPlan(argv=argv, env=config["env"], workdir=config["workdir"],
                                user=config["user"], tty=tty,
                                rlimits=dict(config["spec"].get("ulimits") or {}),
                                capabilities=privileges.capability_mask(spec)),
            etc_files={"/etc/hosts": str(cdir.hosts), "/etc/hostname": str(cdir.hostname),
                       "/etc/resolv.conf": str(cdir.resolv_conf)},
            mounts=[mounts.ResolvedMount(**m) for m in config["mounts"]],
            init_binary=init_binary, new_netns=kind != "host", loopback_up=kind == "none",
            cgroup_ns=self._rootless is None
            and cgroup_path_for_ns(f"isobox/{cdir.id}") is not None,
            rootless=self._rootless is not None,
            tty_gid_mapped=self._rootless is None or self._rootless.tty_gid_mapped,
            setgroups=self._rootless is None or self._rootless.setgroups,
            seccomp=privileges.seccomp_filter(spec),
            no_new_privs=seccomp.no_new_privs(list(spec.get("security_opt") or ())),
            read_only=bool(spec.get("read_only")),
            privileged=bool(spec.get("privileged")),
            shm_size=spec.get("shm_size") or mounts.SHM_SIZE,
            sysctls=dict(spec.get("sysctls") or {}),
            devices=privileges.device_nodes(spec),
        )

    def _hooks(self, cdir: ContainerDir, plan: ContainerPlan) -> Hooks:
        from pytest_isobox.native.monitor import Hooks
        from pytest_isobox.native.rootless.agent import NetworkAgent

        cid = cdir.id
        cgroup = self._cgroup(cid)
        config = cdir.config
        spec = spec_from_dict(config["spec"])
        limits, _ = self._limits_plan(spec)
        attach = agent = None
        if network_kind(spec) == "managed":
            manager = self._network_manager()

            def attach(pid: int) -> tuple[dict, dict]:
                result = manager.attach(cid, cdir.name, config["hostname"], pid, spec,
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
            maker = self._agent_maker  # (a process of ours inside already: no fork)
            if maker is not None and maker.usable():
                maker.release(str(cdir.path), delete)
            else:
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
        try:
            connected = bool(cdir.config.get("networks_detached"))  # network connect since
        except Exception:  # noqa: BLE001 - the directory is gone
            connected = False
        if (network_kind(spec) == "managed" or connected) and self.network is not None:
            self.network.detach(cdir.id)
        if delete:
            try:
                anonymous = list(cdir.config.get("anonymous_volumes") or ())
            except Exception:  # noqa: BLE001 - the directory is gone already
                anonymous = []
            self.store.delete(cdir)
            for name in anonymous:
                with contextlib.suppress(Exception):  # (removed by hand meanwhile)
                    self.volume_store.remove(name, force=True)
        else:
            with contextlib.suppress(Exception):  # a shim's container: released now
                state = cdir.read_state()
                if state.pop("needs_release", None):
                    cdir.write_state(state)

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
        self._remove_if_auto(cid)
        return code

    def _remove_if_auto(self, cid: str) -> None:
        """An exited --rm container of this process goes once its code is known."""
        with contextlib.suppress(Exception):
            cdir = self._find(cid)
            if cdir.config["spec"]["auto_remove"]:
                self.remove(cid, force=True)

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
            if not readable([fd], timeout):
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
        if ProcessIdentity(pid, start) != ProcessIdentity.of(pid):
            os.close(fd)
            return None
        return fd

    def stop(self, container: str, timeout: float | None = None) -> None:
        """Stop signal, up to `timeout` s (default the spec's) for the exit, then SIGKILL."""
        from pytest_isobox.native import keeper

        cdir = self._find(container)
        keeper.mark_stopped(cdir.path)  # its keeper restarts it no more
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
            self._thaw_after_signal(cdir.id)
            if not readable([fd], timeout):
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)
        self._settle(cdir)

    def _settle(self, cdir: ContainerDir, *, release: bool = True) -> None:
        """Wait until the monitor has recorded the exit (it does right after the exit); a
        shim's container then gives back its network and cgroup, as the Python monitor's does
        (unless `release` is False: remove() releases everything with the directory at once,
        so reading the final usage into a state.json about to go is wasted)."""
        if cdir.id in self._monitors:
            self._wait_own(cdir.id, self._monitors[cdir.id], STOP_GRACE)
            if getattr(self._monitors.get(cdir.id), "is_shim", False):
                self._reap(cdir.id)
                if release:
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

    def rename(self, container: str, new_name: str) -> None:
        """`docker rename`: the name is checked as at create, and unique in the home."""
        cdir = self._find(container)
        if not NAME_PATTERN.fullmatch(new_name):
            raise InvalidSpec(f"invalid container name {new_name!r}: only "
                              "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        self.store.rename(cdir, new_name)

    def pause(self, container: str) -> None:
        """Freeze every process of the container (`docker pause`): the cgroup freezer."""
        cdir = self._find(container)
        state = self._read_state(cdir)
        if state["status"] != "running" or not self._monitor_alive(state):
            raise ContainerError(f"container {cdir.id[:12]} is not running")
        cgroup = self._cgroup(cdir.id)
        if self._frozen(cdir.id):
            raise ConflictError(f"container {cdir.id[:12]} is already paused")
        freeze = getattr(cgroup, "freeze", None)
        if freeze is None or not freeze():
            raise ContainerError(f"cannot pause container {cdir.id[:12]}: no cgroup freezer "
                                 "(v1 freezer or v2 cgroup.freeze) that settled")

    def unpause(self, container: str) -> None:
        cdir = self._find(container)
        if not self._frozen(cdir.id):
            raise ConflictError(f"container {cdir.id[:12]} is not paused")
        self._cgroup(cdir.id).thaw()

    def _frozen(self, cid: str) -> bool:
        frozen = getattr(self._cgroup(cid), "frozen", None)
        return bool(frozen and frozen())

    def _thaw_after_signal(self, cid: str) -> None:
        """A paused container gets its signal once thawed: as Docker, stop and kill work on it."""
        if self._frozen(cid):
            self._cgroup(cid).thaw()

    def kill(self, container: str, signal: str = "SIGKILL") -> None:
        cdir = self._find(container)
        state = self._read_state(cdir)
        fd = self._container_pidfd(state)
        if fd is None:
            raise ContainerError(f"container {cdir.id[:12]} is not running")
        try:
            number = signal_number(signal)
            with contextlib.suppress(ProcessLookupError):
                send_signal(fd, number)
            self._thaw_after_signal(cdir.id)
        finally:
            os.close(fd)

    def keep(self, container: str) -> None:
        """The container outlives its owner from now on (an exited foreground run's)."""
        self._find(container).keep()

    def remove(self, container: str, *, force: bool = False) -> None:
        from pytest_isobox.native import keeper

        cdir = self._find(container)
        keeper.mark_stopped(cdir.path)
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
                    send_signal(fd, 9)
                os.close(fd)
                self._thaw_after_signal(cdir.id)  # a paused one gets its SIGKILL once thawed
            self._settle(cdir, release=False)  # _release(delete=True) below does it all
        self._reap(cdir.id)
        monitor = ProcessIdentity.load(cdir.read_state().get("monitor"))
        if monitor is not None and monitor.alive():  # finishing its release; wait for it
            with contextlib.suppress(TimeoutError):
                self._wait_monitor({"monitor": monitor.dump()}, STOP_GRACE, cdir.id)
        self._release(cdir, delete=True)

    @staticmethod
    def _with_exit(state: dict, status: int, finished_at: float) -> dict:
        """`state` with the shim's record of the exit folded in. It reaches state.json when
        the container is released; the cgroup's final usage (OOM kill, peak memory, CPU
        time) is read only when someone asks (`_usage_of`) or before the cgroup goes: a run
        that is only waited for and removed never pays for either."""
        from pytest_isobox.native.runtime import exit_code_of

        if state.get("status") == "running":
            mark_exited(state, exit_code_of(status), finished_at, usage_pending=True)
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
            recorded = cdir.read_exit()
            if recorded is not None:
                state = self._with_exit(state, *recorded)
        return state

    def _host_resolv_conf(self) -> str:
        if self._resolv_conf is None:
            try:
                lines = Path("/etc/resolv.conf").read_text().splitlines(keepends=True)
            except OSError:
                lines = []
            kept = [ln for ln in lines
                    if not re.match(r"\s*nameserver\s+(127\.|::1\s*$)", ln)]
            if not any(ln.strip().startswith("nameserver") for ln in kept):
                kept.append(FALLBACK_DNS)
            self._resolv_conf = "".join(kept)
        return self._resolv_conf

    def _find(self, ref: str) -> ContainerDir:
        return self.store.find(ref)

    def _cgroup(self, cid: str) -> Any:
        from pytest_isobox.native.cgroups import open_cgroup

        if self._rootless is not None:
            return self._rootless.cgroup(f"isobox/{cid}")
        return open_cgroup(f"isobox/{cid}")



def _check_options(spec: ContainerSpec) -> None:
    """Refuse what Docker refuses at create, whoever made the spec (CLI, fixture, API)."""
    from pytest_isobox import dockerargs

    dockerargs.check_working_dir(spec.working_dir)
    dockerargs.check_platform(spec.platform)
    for key, value in spec.sysctls.items():
        dockerargs.parse_sysctl(f"{key}={value}", spec.network_mode if not spec.networks
                                else "bridge")
    for host in spec.extra_hosts:
        dockerargs.parse_extra_host(host)
    if spec.ip and network_kind(spec) == "managed" and not spec.networks \
            and spec.network_mode == "bridge":
        raise InvalidSpec("user specified IP address is supported on user defined networks "
                          "only")


def resolv_conf(host_text: str, spec: ContainerSpec) -> str:
    """The container's resolv.conf: the host's, or, when --dns, --dns-search or --dns-option
    is given, the file Docker builds: search, nameservers, options, each the flag's values
    or else the host's."""
    if not (spec.dns or spec.dns_search or spec.dns_options):
        return host_text
    host: dict[str, list[str]] = {"nameserver": [], "search": [], "options": []}
    for line in host_text.splitlines():
        words = line.split()
        if words and words[0] in host:
            host[words[0]] += words[1:]
        elif words and words[0] == "domain":
            host["search"] += words[1:]
    search = [d for d in spec.dns_search if d != "."] if spec.dns_search else host["search"]
    lines = [f"search {' '.join(search)}"] if search else []
    lines += [f"nameserver {ip}" for ip in spec.dns or host["nameserver"]]
    options = spec.dns_options or host["options"]
    if options:
        lines.append(f"options {' '.join(options)}")
    return "".join(f"{line}\n" for line in lines)
