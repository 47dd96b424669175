"""What a container process is given (`ContainerPlan`, `ProcessPlan`) and the Python side of
its birth: `container_init` runs in the process the monitor forked as PID 1 of a fresh pid
namespace and carries out the start plan (startplan.py) with the Python executor
(planrunner.py); `exec_init` joins a running container, then carries out the plan's process
steps. Both never return: a failure is written to the error pipe (exit status 127, 126 for a
command that cannot be executed) and the process exits.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
from collections.abc import Callable
from typing import NoReturn

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.engine.records import Record, factory, record
from pytest_isobox.native import capabilities, linux, mounts, planrunner, startplan
from pytest_isobox.native.forked import close_fds_except
from pytest_isobox.native.mounts import SHM_SIZE
from pytest_isobox.native.planrunner import StartFailure
from pytest_isobox.native.privileges import DeviceNode
from pytest_isobox.native.rootless import mounts as rootless_mounts


@record
class ProcessPlan(Record):
    """What to execute and as whom, inside the container's root."""

    argv: list[str]
    env: dict[str, str]
    workdir: str = "/"
    user: str = ""
    tty: bool = False
    create_workdir: bool = True
    rlimits: dict[str, tuple[int, int]] = factory(dict)  # Docker's ulimits
    capabilities: int = capabilities.DOCKER_DEFAULT_MASK  # root's, see privileges.py


@record
class ContainerPlan(Record):
    """Everything the container process needs, resolved by the engine before the fork."""

    id: str
    rootfs: str
    lowerdirs: list[str]  # top first, the init layer included
    upper: str
    work: str
    hostname: str
    process: ProcessPlan
    etc_files: dict[str, str] = factory(dict)  # container path -> host file
    mounts: list[mounts.ResolvedMount] = factory(list)
    init_binary: str | None = None
    new_netns: bool = True
    loopback_up: bool = True
    cgroup_ns: bool = False
    rootless: bool = False  # in a user namespace (the monitor entered it): see rootless/
    # the user namespace's, read by the engine (the plan is made outside it for the shim):
    tty_gid_mapped: bool = True  # gid 5 (tty) has a host group: devpts gets gid=5
    setgroups: bool = True  # setgroups(2) allowed (denied for good in a single-id namespace)
    seccomp: bytes | None = None  # a classic BPF program (struct sock_filter[]), see seccomp/
    no_new_privs: bool = False  # --security-opt no-new-privileges
    read_only: bool = False  # --read-only: the root filesystem, not the mounts on it
    privileged: bool = False  # --privileged: no masked or read-only paths, /sys writable
    shm_size: int = SHM_SIZE  # --shm-size: bytes of /dev/shm
    sysctls: dict[str, str] = factory(dict)  # --sysctl, checked by dockerargs
    devices: list[DeviceNode] = factory(list)  # --device, --privileged's

    @property
    def unshare_flags(self) -> int:
        flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
        return flags | (linux.CLONE_NEWNET if self.new_netns else 0)


def container_init(plan: ContainerPlan, stdio: tuple[int, int, int], ready_w: int | None,
                   go_r: int, error_w: int, console: socket.socket | None) -> NoReturn:
    """Turn this freshly forked process into the container's PID 1, then exec its command.

    The monitor puts us in our cgroup (and, with `ready_w`, our network) meanwhile and says
    "go". With a `console` socket (tty), the terminal is made from the container's own
    /dev/ptmx and its master end is sent back over the socket, as runc's --console-socket does.
    """
    try:
        set_up_stdio(stdio)
        steps = startplan.container_steps(plan, wait_network=ready_w is not None,
                                          wait_cgroup=True)
        planrunner.run(steps, planrunner.Channels(ready_w, go_r, console))
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, then we exit
        report_failure(error_w, exc)


def exec_init(pid: int, process: ProcessPlan, stdio: tuple[int, int, int], error_w: int,
              join_cgroup: Callable[[int], None], console: socket.socket | None,
              seccomp_filter: bytes | None = None, no_new_privs: bool = False) -> NoReturn:
    """Join every namespace and the cgroup of container process `pid`, then exec `process`
    under the container's seccomp filter and no_new_privs (the container's plan has them).

    Runs in a forked child of the engine. setns(CLONE_NEWPID) applies to children only, so
    this process forks once more; the grandchild execs and this one passes on its status.
    """
    try:
        set_up_stdio(stdio)
        close_fds_except({error_w, *((console.fileno(),) if console is not None else ())})
        namespaces = [_open_namespace(pid, ns) for ns in ("user", "ipc", "uts", "net", "pid",
                                                                "cgroup")]
        mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        join_cgroup(os.getpid())
        for fd in namespaces:
            if fd is not None:
                linux.setns(fd)
        linux.setns(mnt, linux.CLONE_NEWNS)
        os.fchdir(root)
        os.chroot(".")
        child = os.fork()
        if child == 0:  # in the container's pid namespace: its /proc/self is ours now
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            steps = [("setsid",), *startplan.process_steps(
                process, os.uname().nodename, seccomp_filter, no_new_privs,
                setgroups=rootless_mounts.setgroups_allowed())]
            planrunner.run(steps, planrunner.Channels(console=console))
        os.close(error_w)
        _, status = os.waitpid(child, 0)
        os._exit(exit_code_of(status))
    except BaseException as exc:  # noqa: BLE001
        report_failure(error_w, exc)


def _open_namespace(pid: int, ns: str) -> int | None:
    """An fd on the container's namespace, or None when it is the one we are in already."""
    theirs = os.stat(f"/proc/{pid}/ns/{ns}")
    ours = os.stat(f"/proc/self/ns/{ns}")
    if theirs.st_ino == ours.st_ino and theirs.st_dev == ours.st_dev:
        return None
    return os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)


def set_up_stdio(stdio: tuple[int, int, int]) -> None:
    """Signals back to defaults and the given fds as 0, 1, 2."""
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for target, fd in enumerate(stdio):
        if fd != target:
            os.dup2(fd, target)


def receive_console(console: socket.socket) -> int | None:
    """The master end of a container's terminal, or None if the process died first."""
    _, fds, _, _ = socket.recv_fds(console, 1, 1)
    return fds[0] if fds else None


def check_ulimits(ulimits: dict[str, tuple[int, int]]) -> None:
    """Refuse, before anything is made, a ulimit above the host's hard limit: without
    CAP_SYS_RESOURCE no process here may raise a hard limit."""
    for name, (_, hard) in ulimits.items():
        host = resource.getrlimit(_rlimit(name))[1]
        if host != resource.RLIM_INFINITY and (hard == -1
                                               or hard > host):
            raise InvalidSpec(f"ulimit {name}={hard} exceeds the host's hard limit {host}")


def _rlimit(name: str) -> int:
    return getattr(resource, f"RLIMIT_{name.upper()}")


def exit_code_of(status: int) -> int:
    """A wait status as Docker reports it: the exit code, or 128 + the signal number."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def report_failure(error_w: int, exc: BaseException) -> NoReturn:
    """Tell the waiting parent why the container could not start, then exit."""
    code = exc.exit_code if isinstance(exc, StartFailure) else 127
    message = str(exc) or type(exc).__name__
    try:
        os.write(error_w, f"{code}\n{message}".encode()[:4000])
    finally:
        os._exit(code)
