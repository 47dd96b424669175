"""A container's birth as one ordered sequence, like runc's standard_init_linux.go.

`container_init` runs in the process the monitor forked as PID 1 of a fresh pid namespace and
ends in execve: namespaces, rootfs, pivot_root, masked and read-only paths, hostname, (wait
until the monitor has put us in our cgroup and network, which it does meanwhile), rlimits,
no_new_privs and seccomp, user, capabilities, exec. `exec_init` does the same for a
process joining a running container. Both never return: a failure is written to the error
pipe (exit status 127, 126 for a command that cannot be executed) and the process exits.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from pytest_isobox.engine import ContainerError, InvalidSpec
from pytest_isobox.native import capabilities, linux, mounts, seccomp
from pytest_isobox.native.rootless import mounts as rootless_mounts
from pytest_isobox.native.users import ExecUser, resolve_user

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOFILE_LIMIT = 1048576  # what Docker containers get from dockerd, capped by the host's hard limit


@dataclass
class ProcessPlan:
    """What to execute and as whom, inside the container's root."""

    argv: list[str]
    env: dict[str, str]
    workdir: str = "/"
    user: str = ""
    tty: bool = False
    create_workdir: bool = True
    rlimits: dict[str, tuple[int, int]] = field(default_factory=dict)  # Docker's ulimits


@dataclass
class ContainerPlan:
    """Everything the container process needs, resolved by the engine before the fork."""

    id: str
    rootfs: str
    lowerdirs: list[str]  # top first, the init layer included
    upper: str
    work: str
    hostname: str
    process: ProcessPlan
    etc_files: dict[str, str] = field(default_factory=dict)  # container path -> host file
    mounts: list[mounts.ResolvedMount] = field(default_factory=list)
    init_binary: str | None = None
    new_netns: bool = True
    loopback_up: bool = True
    cgroup_ns: bool = False
    rootless: bool = False  # in a user namespace (the monitor entered it): see rootless/
    seccomp: bytes | None = None  # a classic BPF program (struct sock_filter[]), see seccomp/
    no_new_privs: bool = False  # --security-opt no-new-privileges

    @property
    def unshare_flags(self) -> int:
        flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
        return flags | (linux.CLONE_NEWNET if self.new_netns else 0)


class StartFailure(ContainerError):
    """The container process failed before exec; exit_code is what Docker reports (127/126)."""

    def __init__(self, message: str, exit_code: int = 127) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def container_init(plan: ContainerPlan, stdio: tuple[int, int, int], ready_w: int | None,
                   go_r: int, error_w: int, console: socket.socket | None) -> NoReturn:
    """Turn this freshly forked process into the container's PID 1, then exec its command.

    With a `console` socket (tty), the terminal is made from the container's own /dev/ptmx
    and its master end is sent back over the socket, as runc's --console-socket does.
    """
    try:
        set_up_stdio(stdio)
        linux.unshare(plan.unshare_flags)
        if ready_w is not None:  # the monitor attaches the network to our new namespace
            os.write(ready_w, b"r")
        if plan.cgroup_ns:  # a cgroup namespace must be rooted in our own cgroup
            _wait_for_go(go_r)
            linux.unshare(linux.CLONE_NEWCGROUP)
        if plan.loopback_up:
            linux.interface_up("lo")
        build_rootfs(plan)
        mounts.pivot_root(plan.rootfs)
        mounts.protect_paths()
        linux.sethostname(plan.hostname)
        new_session(console)
        if not plan.cgroup_ns:  # cgroup and network were set up meanwhile, by the monitor
            _wait_for_go(go_r)
        become_process(plan.process, plan.hostname, plan.seccomp, plan.no_new_privs)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, then we exit
        report_failure(error_w, exc)


def _wait_for_go(go_r: int) -> None:
    """Block until the monitor has put us in our cgroup and network; exit if it gave up."""
    if os.read(go_r, 1) != b"g":
        os._exit(1)


def build_rootfs(plan: ContainerPlan) -> None:
    """The overlay, Docker's default mounts, the user's mounts and /etc files, below the root."""
    mounts.make_mounts_private()
    mounts.mount_overlay(plan.lowerdirs, plan.upper, plan.work, plan.rootfs,
                         userxattr=plan.rootless)
    mounts.mount_defaults(plan.rootfs, plan.new_netns, rootless=plan.rootless)
    for mount in plan.mounts:
        mounts.mount_user(plan.rootfs, mount)
    for target, source in plan.etc_files.items():
        mounts.bind_file(plan.rootfs, source, target)
    if plan.init_binary:
        mounts.bind_file(plan.rootfs, plan.init_binary, mounts.INIT_PATH, read_only=True)


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
        if child == 0:
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            new_session(console)
            become_process(process, os.uname().nodename, seccomp_filter, no_new_privs)
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


def close_fds_except(keep: set[int]) -> None:
    """Close every fd above 2 but `keep`: the engine's pipes must not live on in us."""
    low = 3
    for fd in sorted(f for f in keep if f >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def new_session(console: socket.socket | None) -> None:
    """A session of our own; with a console socket, a terminal from the container's devpts
    as 0, 1, 2 and controlling tty, its master end sent over the socket."""
    os.setsid()
    if console is None:
        return
    master, slave = os.openpty()  # /dev/ptmx here is the container's own devpts instance
    socket.send_fds(console, [b"m"], [master])
    os.close(master)
    console.close()
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)
    fcntl.ioctl(0, linux.TIOCSCTTY, 0)


def receive_console(console: socket.socket) -> int | None:
    """The master end of a container's terminal, or None if the process died first."""
    _, fds, _, _ = socket.recv_fds(console, 1, 1)
    return fds[0] if fds else None


def become_process(process: ProcessPlan, hostname: str, seccomp_filter: bytes | None = None,
                   no_new_privs: bool = False) -> NoReturn:
    """User, environment, working dir, rlimits, seccomp and capabilities; then execve.

    The filter goes in while we still hold CAP_SYS_ADMIN (without no_new_privs the kernel
    wants it), as runc does; all this function calls after it is allowed by Docker's profile.
    """
    user = resolve_user(process.user, Path("/etc/passwd"), Path("/etc/group"))
    env = process_environment(process.env, user, hostname, process.tty)
    _enter_workdir(process.workdir, process.create_workdir)
    executable = find_executable(process.argv[0], env.get("PATH", DEFAULT_PATH))
    set_rlimits(process.rlimits)
    capabilities.drop_bounding_set()
    if no_new_privs:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    if seccomp_filter is not None:
        seccomp.load(seccomp_filter)
    if rootless_mounts.setgroups_allowed():  # denied for good in a single-id namespace
        os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)
    capabilities.set_process_capabilities(user.uid)
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # a uid change cleared it
    try:
        os.execve(executable, process.argv, env)
    except OSError as exc:
        code = 126 if exc.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else 127
        raise StartFailure(f"exec {process.argv[0]}: {exc.strerror}", code) from None


def process_environment(env: dict[str, str], user: ExecUser, hostname: str,
                        tty: bool) -> dict[str, str]:
    """Docker's process environment: PATH and HOSTNAME always, HOME from passwd, TERM for ttys."""
    result = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if tty:
        result["TERM"] = "xterm"
    result.update(env)
    result.setdefault("HOME", user.home)
    return result


def _enter_workdir(workdir: str, create: bool) -> None:
    if create:
        os.makedirs(workdir, mode=0o755, exist_ok=True)
    try:
        os.chdir(workdir)
    except OSError as exc:
        raise StartFailure(f"chdir to cwd ({workdir!r}) set in config: {exc.strerror}") from None


def find_executable(name: str, path: str) -> str:
    """The file execve should run for argv[0], searched in the container's PATH."""
    if "/" in name:
        return name
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise StartFailure(f'exec: "{name}": executable file not found in $PATH', 127)


def set_rlimits(ulimits: dict[str, tuple[int, int]]) -> None:
    """Docker's open-files limit for both soft and hard, never above the host's hard limit,
    then the container's own ulimits (checked against the host by `check_ulimits`)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = NOFILE_LIMIT if hard == resource.RLIM_INFINITY else min(NOFILE_LIMIT, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    for name, (soft, hard) in ulimits.items():
        resource.setrlimit(_rlimit(name), (_rlim(soft), _rlim(hard)))


def check_ulimits(ulimits: dict[str, tuple[int, int]]) -> None:
    """Refuse, before anything is made, a ulimit above the host's hard limit: without
    CAP_SYS_RESOURCE no process here may raise a hard limit."""
    for name, (_, hard) in ulimits.items():
        host = resource.getrlimit(_rlimit(name))[1]
        if host != resource.RLIM_INFINITY and (_rlim(hard) == resource.RLIM_INFINITY
                                               or hard > host):
            raise InvalidSpec(f"ulimit {name}={hard} exceeds the host's hard limit {host}")


def _rlimit(name: str) -> int:
    return getattr(resource, f"RLIMIT_{name.upper()}")


def _rlim(value: int) -> int:
    return resource.RLIM_INFINITY if value == -1 else value


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
