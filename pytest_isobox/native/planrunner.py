"""The Python executor of start plans (startplan.py): the same steps isobox-shim.c carries
out, one primitive per step, no decision of its own. Used where the shim is not: no C
compiler (or ISOBOX_SHIM=0), a terminal, an exec into a container.

`run` never returns: it ends in execve, or raises `StartFailure` (the caller reports it).
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import socket
import stat
from pathlib import Path
from typing import NoReturn

from pytest_isobox.engine.records import Record, record
from pytest_isobox.native import capabilities, linux, mounts, seccomp
from pytest_isobox.native.startplan import DEFAULT_PATH, Step
from pytest_isobox.native.users import ExecUser, resolve_user


class StartFailure(Exception):
    """A container that could not start: the process failed before exec, or its monitor or
    shim said so. `exit_code` is what Docker reports (127, 126 for a command that cannot be
    executed); the one such exception of the native engine, from the child to the engine."""

    def __init__(self, message: str, exit_code: int = 127) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@record
class Channels(Record):
    """How this process talks to whoever started it: "r" on `ready_w` when the namespaces
    exist, a "g" awaited on `go_r`; the terminal's master sent over `console`."""

    ready_w: int | None = None
    go_r: int | None = None
    console: socket.socket | None = None


class _Runner:
    def __init__(self, channels: Channels) -> None:
        self.channels = channels
        self.root = ""
        self.user: ExecUser | None = None

    def execute(self, steps: list[Step]) -> None:
        for name, *args in steps:
            getattr(self, f"op_{name}")(*args)

    def _user(self) -> ExecUser:
        if self.user is None:
            self.user = resolve_user("", Path("/etc/passwd"), Path("/etc/group"))
        return self.user

    # namespaces and the handshake with the monitor
    def op_unshare(self, flags: int) -> None:
        linux.unshare(flags)

    def op_ready(self) -> None:
        os.write(self.channels.ready_w, b"r")

    def op_go(self) -> None:
        if os.read(self.channels.go_r, 1) != b"g":  # the monitor gave up
            os._exit(1)

    def op_lo(self) -> None:
        linux.interface_up("lo")

    # the root filesystem
    def op_private(self) -> None:
        mounts.make_mounts_private()

    def op_chdir(self, path: str) -> None:
        os.chdir(path)

    def op_root(self, path: str) -> None:
        self.root = path

    def op_mount(self, source: str, target: str, fstype: str, flags: int, data: str) -> None:
        linux.mount(source or None, target, fstype or None, flags, data or None)

    def op_mountin(self, source: str, path: str, is_dir: int, fstype: str, flags: int,
                   data: str) -> None:
        point = mounts.mountpoint(self.root, path, bool(is_dir))
        linux.mount(source or None, point, fstype or None, flags, data or None)

    def op_remountin(self, path: str, flags: int) -> None:
        linux.mount(None, mounts.secure_join(self.root, path), None, flags)

    def op_mknodin(self, path: str, mode: int, major: int, minor: int) -> None:
        point = mounts.secure_join(self.root, path)
        os.mknod(point, mode | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(point, mode)

    def op_symlinkin(self, target: str, path: str) -> None:
        os.symlink(target, mounts.secure_join(self.root, path))

    def op_pivot(self) -> None:
        mounts.pivot_root(self.root)
        self.root = ""

    def op_sysctl(self, key: str, value: str) -> None:
        try:
            with open(f"/proc/sys/{key.replace('.', '/')}", "w") as f:
                f.write(value)
        except OSError as exc:
            raise StartFailure(f"sysctl {key}={value}: {exc.strerror}") from None

    def op_mask(self, path: str) -> None:
        mounts.mask_path(path)

    def op_readonly(self, path: str) -> None:
        mounts.make_read_only(path)

    # the process
    def op_hostname(self, name: str) -> None:
        linux.sethostname(name)

    def op_setsid(self) -> None:
        new_session(self.channels.console)

    def op_user(self, spec: str) -> None:
        self.user = resolve_user(spec, Path("/etc/passwd"), Path("/etc/group"))

    def op_workdir(self, path: str, create: int) -> None:
        if create:
            os.makedirs(path, mode=0o755, exist_ok=True)
        try:
            os.chdir(path)
        except OSError as exc:
            raise StartFailure(f"chdir to cwd ({path!r}) set in config: {exc.strerror}") from None

    def op_nofile(self, limit: int) -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    def op_rlimit(self, which: int, soft: int, hard: int) -> None:
        resource.setrlimit(which, (_rlim(soft), _rlim(hard)))

    def op_bounding(self, keep: int, last_cap: int) -> None:
        capabilities.drop_bounding_set(keep, last_cap)

    def op_nonewprivs(self) -> None:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)

    def op_seccomp(self, program: bytes) -> None:
        seccomp.load(program)

    def op_identity(self, setgroups: int) -> None:
        user = self._user()
        if setgroups:
            os.setgroups(list(user.groups))
        os.setgid(user.gid)
        os.setuid(user.uid)

    def op_caps(self, keep: int) -> None:
        capabilities.set_process_capabilities(self._user().uid, keep)
        linux.prctl(linux.PR_SET_PDEATHSIG, 9)  # SIGKILL: a uid change cleared it

    def op_exec(self, argv: list[str], env_list: list[str]) -> NoReturn:
        env = dict(item.partition("=")[::2] for item in env_list)
        env.setdefault("HOME", self._user().home)
        executable = find_executable(argv[0], env.get("PATH", DEFAULT_PATH))
        try:
            os.execve(executable, argv, env)
        except OSError as exc:
            code = 126 if exc.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else 127
            raise StartFailure(f"exec {argv[0]}: {exc.strerror}", code) from None


def run(steps: list[Step], channels: Channels) -> NoReturn:
    """Carry out `steps` in this process, in order, ending in their exec."""
    _Runner(channels).execute(steps)
    raise StartFailure("plan: no exec step")


def execute(steps: list[Step]) -> None:
    """Carry out steps that end in no exec (a container's overlay for its archive, a test)."""
    _Runner(Channels()).execute(steps)


def new_session(console: socket.socket | None) -> None:
    """A session of our own; with a console socket, a terminal from the container's devpts
    as 0, 1, 2 and controlling tty, its master end sent over the socket (runc's
    --console-socket)."""
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


def find_executable(name: str, path: str) -> str:
    """The file execve should run for argv[0], searched in the container's PATH."""
    if "/" in name:
        return name
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise StartFailure(f'exec: "{name}": executable file not found in $PATH', 127)


def _rlim(value: int) -> int:
    return resource.RLIM_INFINITY if value == -1 else value
