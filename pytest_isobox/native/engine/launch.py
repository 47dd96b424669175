"""Starting containers: through isobox-shim (spawned ahead in a pool, fed the start plan)
or through the Python monitor (forked ahead as a spare); both report the same events."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from pytest_isobox.engine import ContainerError, ContainerSpec, ContainerState
from pytest_isobox.native.state import ContainerDir, mark_running, mark_start_failed
from pytest_isobox.processes import ProcessIdentity

if TYPE_CHECKING:  # (imported where used: read-only verbs never pay for them)
    from collections.abc import Generator

    from pytest_isobox.native.cgroups import Limits
    from pytest_isobox.native.engine.support import ShimSpare
    from pytest_isobox.native.monitor import Hooks, Terminal
    from pytest_isobox.native.runtime import ContainerPlan


class LaunchRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    # rootless: whether the last container started was on the host's network, the guess for
    # the shims spawned ahead (see `shim.spawn`'s own_netns)
    _host_net_last = False

    def start(self, container: str) -> ContainerState:
        from pytest_isobox.native import keeper

        cdir = self._find(container)
        keeper.clear_stopped(cdir.path)
        state = self._start(cdir, None)
        if keeper.needed(
                cdir.config["spec"], cdir.config.get("image_config") or {}):
            self._spawn_keeper(cdir.id)
        return state

    def _spawn_keeper(self, cid: str) -> None:
        """The container's keeper (restart policy, healthcheck), detached from this process:
        a child that forks it and exits at once, so that nothing is left to reap."""
        from pytest_isobox.native import keeper
        from pytest_isobox.native.forked import fork_child

        self._join_pool()  # no fork while another thread works
        home = str(self.home)
        middle = fork_child(lambda: fork_child(lambda: keeper.keep(home, cid), name="keeper",
                                               keep_fds=set(), die_with_parent=False) and None,
                            name="keeper", keep_fds=set(), die_with_parent=False)
        os.waitpid(middle, 0)

    def _start(self, cdir: ContainerDir, terminal: Terminal | None) -> ContainerState:
        from pytest_isobox.native import shim
        from pytest_isobox.native.engine.support import ShimSpare
        from pytest_isobox.native.monitor import spawn_monitor

        state = self._read_state(cdir)
        if state["status"] == "running" and self._monitor_alive(state):
            return self._state_of(cdir, state)
        self._reap(cdir.id)
        if state.get("needs_release"):  # a restart: the last run's network and cgroup go first
            self._release(cdir, delete=False)
        spec = cdir.config["spec"]
        spare = self._reserved.pop(cdir.id, None)
        if self._rootless is not None:
            from pytest_isobox.native.specs import network_kind

            self._host_net_last = network_kind(spec) == "host"
            if isinstance(spare, ShimSpare) and spare.handle.own_netns and self._host_net_last:
                spare.discard()  # its network namespace is made: the host's cannot be joined
                spare = None
        # a detached --rm container goes when it exits, with nobody of ours around: the
        # Python monitor releases and removes it then; a shim leaves that to the next reader
        unwatched_rm = cdir.owner is None and spec["auto_remove"]
        if terminal is None and not unwatched_rm and (
                isinstance(spare, ShimSpare)
                or (spare is None and self._shim_binary() is not None)):
            agent = self._request_agent(cdir) if not spec["tty"] else None
            try:
                plan = self._plan(cdir, spec["tty"])
                if shim.eligible(plan):
                    return self._start_shim(cdir, plan, state, spare, agent)
            except BaseException:
                if agent is not None:
                    agent.close(wait=5.0)  # (a no-op once the start has closed it)
                raise
            if agent is not None:
                agent.close(wait=5.0)  # its claim undone
        if isinstance(spare, ShimSpare):
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
            owner = ProcessIdentity.load(cdir.owner)
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
        return self._state_of(cdir, event["state"], brief=True)  # (just started)

    def _shim_binary(self) -> str | None:
        from pytest_isobox.native import shim

        if self._shim is False:
            self._shim = shim.binary(shim.build_dir())
        return self._shim  # type: ignore[return-value]

    def _spawn_shim(self, cid: str, limits: Limits, host_net: bool | None = None) -> ShimSpare:
        """A shim for `cid` whose container process is in its cgroup, waiting for the plan.
        Rootless, the shim enters the user namespace first, as the Python monitor does, and
        keeps the namespace's holder alive as long as it runs, as the monitor's pin does; it
        makes the container's network namespace ahead unless the container is on the host's
        network (`host_net`; None: not known yet, guessed from the last start)."""
        from pytest_isobox.native import shim
        from pytest_isobox.native.engine.support import ShimSpare

        cgroup = self._cgroup(cid)
        cgroup.create(limits)
        pin = None
        owner = os.pidfd_open(os.getpid())
        try:
            userns = None
            if self._rootless is not None:
                user_fd, pin = self._rootless.shim_namespace()
                userns = (user_fd, pin.fileno())
            handle = shim.spawn(self._shim_binary(), cid, cgroup.procs_files(), owner, userns,
                                own_netns=not (self._host_net_last if host_net is None
                                               else host_net))
        except BaseException:
            cgroup.destroy()
            raise
        finally:
            os.close(owner)  # the shim has its own copies; ours would be fds per container
            if pin is not None:
                pin.close()
        return ShimSpare(cid, handle, cgroup)

    def _start_shim(self, cdir: ContainerDir, plan: ContainerPlan, state: dict,
                    spare: ShimSpare | None, agent: Any) -> ContainerState:
        """Start with isobox-shim: the engine attaches the network itself while the container
        process waits for it (rootless: `agent` does, told what to attach already), and
        records the start; the shim records the exit."""
        from pytest_isobox.native import shim
        from pytest_isobox.native.planrunner import StartFailure
        from pytest_isobox.native.specs import network_kind, spec_from_dict

        config = cdir.config
        spec = spec_from_dict(config["spec"])
        limits, _ = self._limits_plan(spec)
        network = network_kind(spec) == "managed"
        try:
            if spare is None:
                spare = self._spawn_shim(cdir.id, limits, network_kind(spec) == "host")
            elif limits.controllers():  # the spare's cgroup was made before its limits were known
                spare.cgroup.create(limits)
            blob = shim.encode_plan(plan, log=str(cdir.log), exit_file=str(cdir.path / "exit"),
                                    persistent=cdir.owner is None, network=network)
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
        wired = False
        try:
            if network and self._rootless is None:  # while the container sets up, so do we:
                self._network_manager().prepare(spec)  # a session's first makes the bridge
            while True:
                event = handle.next_event()
                if event is None:
                    raise StartFailure("the container's shim died at start", 127)
                if event["event"] == "ready":
                    ips, ports = self._attach_for_shim(cdir, spec, event["pid"], agent, handle)
                    wired = True
                    if self._spares:  # (a CLI command starts one container: no next one)
                        self._fork_agent()  # while the container starts: the two overlap
                    self._fork_spare()  # after the network: it is on the container's path
                elif event["event"] == "failed":
                    raise StartFailure(event["message"], event["exit_code"])
                elif event["event"] == "started":
                    if network and not wired:  # its process died before it was ready
                        raise StartFailure("the container's process died before its network "
                                           "was attached", 127)
                    break
        except BaseException as exc:
            handle.close()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(handle.pid, 0)
            if agent is not None:  # its claim is undone before the release below
                agent.close(wait=5.0)
            code, message = (exc.exit_code, exc.message) if isinstance(exc, StartFailure) \
                else (127, str(exc))
            with contextlib.suppress(Exception):
                cdir.write_state(mark_start_failed(state, code, message))
            self._release(cdir, delete=False)
            if isinstance(exc, StartFailure):
                raise ContainerError(f"cannot start container {cdir.id[:12]}: {message}") from None
            raise
        pid = event["pid"]
        mark_running(state, pid, ProcessIdentity.of(handle.pid), needs_release=True, ips=ips,
                     ports={k: [list(b) for b in v] for k, v in ports.items()})
        cdir.write_state(state)
        self._monitors[cdir.id] = handle
        return self._state_of(cdir, state, brief=True)  # (just started)

    def _attach_for_shim(self, cdir: ContainerDir, spec: ContainerSpec, pid: int,
                         agent: Any, handle: Any) -> tuple[dict, dict]:
        """Wire the network of a shim's container `pid` and let the shim go: from here when
        rootful; rootless, by its network agent (`_request_agent`), which lives as long as
        the shim and lets it go itself."""
        if agent is None:
            wired = _attach(self._network_manager(), _attach_request(cdir, spec, pid))
            handle.go()
            return wired
        try:
            return agent.attach(pid, handle.pid, handle.control_fd)
        finally:
            agent.close()  # our pipes only: the agent itself ends with the shim

    def _request_agent(self, cdir: ContainerDir) -> Any:
        """Rootless, on a network: the network agent of a shim's container (the one forked
        ahead, see `_fork_agent`, else one forked now), told what to attach as the start
        begins, so that it claims the addresses while the start is planned and the container
        sets up. None otherwise."""
        from pytest_isobox.native.specs import network_kind, spec_from_dict

        if self._rootless is None or network_kind(cdir.config["spec"]) != "managed":
            return None
        self._fork_agent()
        agent, self._agent = self._agent, None
        try:
            agent.request(_attach_request(cdir, spec_from_dict(cdir.config["spec"]), None))
        except BaseException:
            agent.close()
            raise
        return agent

    def _fork_agent(self) -> None:
        """Rootless: have the next shim container's network agent ready, already in the user
        namespace, forked by this engine's agent maker (a fork of this process made once)."""
        import functools

        from pytest_isobox.native.rootless.agent import AgentMaker, ShimAgent

        if self._rootless is None or self._agent is not None:
            return
        if self._agent_maker is None or not self._agent_maker.alive():
            manager = self._network_manager()
            self._join_pool()  # a fork: no other thread may be mid-way through anything
            self._agent_maker = AgentMaker(self._rootless.enter, self._rootless.fds,
                                           functools.partial(_prepare_in_agent, manager),
                                           functools.partial(_release_in_maker, self))
        self._agent = ShimAgent(self._agent_maker)

    def _refill_pool(self) -> None:
        """Spawn shims for the next containers when none is left, several at once when
        containers come fast, from a thread (mkdir and posix_spawn release the GIL), so the
        engine goes on with the container it is starting. Each shim moves its waiting
        process into its new cgroup; on cgroup v1 the first such move after a quiet spell
        waits for an RCU grace period (milliseconds, during which every fork on the machine
        waits too), while moves close together share one: a burst of containers pays that
        once per batch."""
        from pytest_isobox.native.engine.support import POOL_BURST, POOL_MAX, POOL_QUIET

        if self._pool or (self._pool_thread is not None and self._pool_thread.is_alive()):
            return
        now = time.monotonic()
        if now - self._pool_refilled < POOL_BURST:
            self._pool_batch = min(self._pool_batch * 2, POOL_MAX)
        elif now - self._pool_refilled > POOL_QUIET:
            self._pool_batch = 1
        self._pool_refilled = now
        cids = [os.urandom(32).hex() for _ in range(self._pool_batch)]
        self._pool_thread = threading.Thread(target=self._spawn_pool, args=(cids,),
                                             name="isobox-shim-pool", daemon=True)
        self._pool_thread.start()

    def _spawn_own_shim(self) -> None:
        """A create that finds no shim spawned ahead (a session's first container, one after
        a quiet spell): its own shim spawned now from the pool's thread, while this thread
        writes the container's state and makes its start plan, instead of after them."""
        if self._spares and not self._pool and self._shim_binary() is not None:
            self._refill_pool()

    def _spawn_pool(self, cids: list[str]) -> None:
        from pytest_isobox.native.cgroups import Limits

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
        from pytest_isobox.native.cgroups import Limits
        from pytest_isobox.native.monitor import CgroupHooks, spawn_spare

        if self._spare is not None or not self._spares:
            return
        if self._shim_binary() is not None:
            self._refill_pool()
            return
        if self._rootless is not None:
            return  # (a Python spare would need the user namespace before its plan)
        cid = os.urandom(32).hex()
        cgroup = self._cgroup(cid)

        def prepare(plan: ContainerPlan) -> tuple[ContainerDir, Hooks, ProcessIdentity | None,
                                                  bool]:
            cdir = self._find(cid)
            return (cdir, self._hooks(cdir, plan), ProcessIdentity.load(cdir.owner),
                    cdir.config["spec"]["auto_remove"])

        def destroy_if_unused() -> None:  # another process may have started the container
            if not cgroup.procs():
                cgroup.destroy()

        self._spare = spawn_spare(cid, prepare, CgroupHooks(
            create=lambda: cgroup.create(Limits()), join=cgroup.add, destroy=destroy_if_unused),
            self._me)



def _attach_request(cdir: ContainerDir, spec: ContainerSpec, pid: int | None) -> tuple:
    """What `_attach` and `_prepare_in_agent` take (pid None: not known yet)."""
    return (cdir.id, cdir.name, cdir.config["hostname"], pid, spec, str(cdir.hosts))


def _attach(manager: Any, request: tuple) -> tuple[dict, dict]:
    """(ips, ports) of attaching the container `request` names (see `_attach_request`)."""
    from pathlib import Path

    cid, name, hostname, pid, spec, hosts = request
    result = manager.attach(cid, name, hostname, pid, spec, Path(hosts))
    return result.ips, result.ports


def _prepare_in_agent(manager: Any, request: tuple) -> Generator[Any, int | None, None]:
    """A rootless network agent's `_attach` in steps (see `ShimAgent`): the claim, before
    the container's pid is known; sent the pid, the wiring, whose (ips, ports) it yields,
    then the record of the namespace's holder, after the agent's reply; sent None instead,
    the claim undone. The agent is a process of its own, which may stay in the helper netns
    once there (one thread for every step, see `stay_in_helper`)."""
    from pathlib import Path

    cid, name, hostname, _, spec, hosts = request
    manager.stay_in_helper()
    prepared = manager.prepare_attach(cid, name, hostname, spec, Path(hosts))
    pid = yield
    if pid is None:
        manager.detach(cid)
        return
    result = manager.finish_attach(prepared, pid)
    yield result.ips, result.ports
    manager.record_holder(prepared, pid)


def _release_in_maker(engine: Any, path: str, delete: bool) -> None:
    """The agent maker's release of a container (see `AgentMaker`): its copy of the engine
    releases it, as a `UserNamespace.run` child of the engine would."""
    from pathlib import Path

    engine._release(ContainerDir(Path(path)), delete)
