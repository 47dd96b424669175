"""The engine's side of isobox-shim, the small C monitor + container init (isobox-shim.c).

Why a C program: forking the engine's ~45 MB Python process for a monitor, and that again for
the container, costs several milliseconds of CPU per container on small machines; the shim is
spawned with vfork + exec and does the same work in a few hundred microseconds. It makes no
decision of its own: `encode_plan` turns a `ContainerPlan` into the list of steps that
`runtime.container_init` would take, and the shim carries them out.

The binary is compiled once per source version from the C file beside this module into a
cache shared by every home of the user (`build_dir`; a C compiler is needed: Debian's gcc,
which `scripts/install-deps` installs). Without one, or with ISOBOX_SHIM=0, the engine uses the
Python monitor instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import resource
import shutil
import subprocess
from pathlib import Path

from pytest_isobox.native import capabilities, linux, mounts
from pytest_isobox.native.monitor import MonitorHandle
from pytest_isobox.native.rootless import mounts as rootless_mounts
from pytest_isobox.native.runtime import DEFAULT_PATH, NOFILE_LIMIT, ContainerPlan, exit_code_of

SOURCE = Path(__file__).with_name("isobox-shim.c")
_MS = {"bind": linux.MS_BIND, "rec": linux.MS_REC, "remount": linux.MS_REMOUNT,
       "rdonly": linux.MS_RDONLY, "nosuid": linux.MS_NOSUID, "nodev": linux.MS_NODEV,
       "noexec": linux.MS_NOEXEC, "private": linux.MS_PRIVATE,
       "strictatime": linux.MS_STRICTATIME}


def _flags(*names: str) -> int:
    value = 0
    for name in names:
        value |= _MS[name]
    return value


def build_dir() -> Path:
    """ISOBOX_SHIM_DIR, else $XDG_CACHE_HOME/isobox-shim, else ~/.cache/isobox-shim."""
    if os.environ.get("ISOBOX_SHIM_DIR"):
        return Path(os.environ["ISOBOX_SHIM_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "isobox-shim"


def binary(build_dir: Path) -> str | None:
    """The compiled shim for this source, built on first use; None when it cannot be built
    (no C compiler) or is turned off (ISOBOX_SHIM=0)."""
    if os.environ.get("ISOBOX_SHIM", "1") == "0":
        return None
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = build_dir / f"isobox-shim-{digest}"
    if target.exists():
        return str(target)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    tmp = build_dir / f".isobox-shim-{digest}.{os.getpid()}.tmp"
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        for static in (["-static"], []):  # static starts faster; not every libc has one
            result = subprocess.run([compiler, "-O2", *static, "-o", str(tmp), str(SOURCE)],
                                    capture_output=True, check=False)
            if result.returncode == 0:
                os.replace(tmp, target)  # atomic: another process may build it meanwhile
                return str(target)
    except OSError:  # an unwritable cache: the Python monitor does the work
        pass
    with contextlib.suppress(OSError):
        tmp.unlink()
    return None


def eligible(plan: ContainerPlan) -> bool:
    """Whether the shim can start this container: detached, no terminal, rootful."""
    return not plan.process.tty and not plan.rootless


def encode_plan(plan: ContainerPlan, *, log: str, exit_file: str, persistent: bool,
                network: bool) -> bytes:
    """The plan as the shim reads it: monitor settings, an empty string, then the container's
    steps in the order of `runtime.container_init`."""
    out: list[str] = ["log", log, "exit", exit_file, "persistent", "1" if persistent else "0", ""]

    def step(*args: object) -> None:
        out.extend(str(a) for a in args)

    step("unshare", plan.unshare_flags)
    if network:
        step("ready")
    if plan.cgroup_ns:  # the shim put us in our cgroup before it sent the plan
        step("unshare", linux.CLONE_NEWCGROUP)
    if plan.loopback_up:
        step("lo")
    _rootfs_steps(plan, step)
    step("pivot")
    for path in mounts.MASKED_PATHS:
        step("mask", path)
    for path in mounts.READONLY_PATHS:
        step("readonly", path)
    step("hostname", plan.hostname)
    step("setsid")
    if network:
        step("go")
    process = plan.process
    step("user", process.user)
    step("workdir", process.workdir, 1 if process.create_workdir else 0)
    step("nofile", NOFILE_LIMIT)
    for name, (soft, hard) in process.rlimits.items():
        step("rlimit", getattr(resource, f"RLIMIT_{name.upper()}"), soft, hard)
    step("bounding", capabilities.DOCKER_DEFAULT_MASK, linux.last_cap())
    if plan.no_new_privs:
        step("nonewprivs")
    if plan.seccomp:  # while still root: without no_new_privs a filter needs CAP_SYS_ADMIN
        step("seccomp", plan.seccomp.hex())
    step("identity", 1)
    step("caps", capabilities.DOCKER_DEFAULT_MASK)
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": plan.hostname, **process.env}
    step("exec", len(process.argv), *process.argv, len(env), *(f"{k}={v}" for k, v in env.items()))
    step("end")
    for field in out:
        if "\0" in field:
            raise ValueError(f"a NUL byte in the container's plan: {field[:40]!r}")
    return "\0".join(out).encode() + b"\0"


def _rootfs_steps(plan: ContainerPlan, step) -> None:
    """The overlay, Docker's default mounts, the user's mounts and /etc files (mounts.py's
    build_rootfs, step by step; paths in the root are resolved by the shim, symlink-safe)."""
    step("private")
    lowerdirs = list(plan.lowerdirs)
    parents = {os.path.dirname(d) for d in lowerdirs}
    if len(parents) == 1 and len(lowerdirs) > 1:  # relative lowerdirs fit the one-page data
        step("chdir", parents.pop())
        lowerdirs = [os.path.basename(d) for d in lowerdirs]
    step("mount", "overlay", plan.rootfs, "overlay", 0,
         mounts.overlay_options(lowerdirs, plan.upper, plan.work))
    step("root", plan.rootfs)
    step("mountin", "proc", "/proc", 1, "proc", _flags("nosuid", "nodev", "noexec"), "")
    step("mountin", "tmpfs", "/dev", 1, "tmpfs", _flags("nosuid", "strictatime"),
         "mode=755,size=65536k")
    for name, (major, minor) in mounts.DEVICES.items():
        step("mknodin", f"/dev/{name}", 0o666, major, minor)
    for name, target in mounts.DEV_SYMLINKS.items():
        step("symlinkin", target, f"/dev/{name}")
    step("mountin", "devpts", "/dev/pts", 1, "devpts", _flags("nosuid", "noexec"),
         rootless_mounts.devpts_options(True))
    step("mountin", "shm", "/dev/shm", 1, "tmpfs", _flags("nosuid", "nodev", "noexec"),
         f"mode=1777,size={mounts.SHM_SIZE}")
    step("mountin", "mqueue", "/dev/mqueue", 1, "mqueue", _flags("nosuid", "nodev", "noexec"), "")
    sys_flags = _flags("rdonly", "nosuid", "nodev", "noexec")
    if plan.new_netns:
        step("mountin", "sysfs", "/sys", 1, "sysfs", sys_flags, "")
    else:  # the host's network namespace: bind its sysfs read-only, as runc does
        step("mountin", "/sys", "/sys", 1, "", _flags("bind", "rec"), "")
        step("remountin", "/sys", _flags("bind", "remount") | sys_flags)
    for m in plan.mounts:
        if m.kind == "tmpfs":
            data = "mode=1777" + (f",size={m.size}" if m.size else "")
            step("mountin", "tmpfs", m.target, 1, "tmpfs",
                 _flags("nosuid", "nodev") | (linux.MS_RDONLY if m.read_only else 0), data)
            continue
        step("mountin", m.source, m.target, 1 if os.path.isdir(m.source) else 0, "",
             _flags("bind", "rec"), "")
        if m.read_only:
            step("remountin", m.target, _flags("bind", "remount", "rdonly"))
    for target, source in plan.etc_files.items():
        step("mountin", source, target, 0, "", _flags("bind"), "")
    if plan.init_binary:
        step("mountin", plan.init_binary, mounts.INIT_PATH, 0, "", _flags("bind"), "")
        step("remountin", mounts.INIT_PATH, _flags("bind", "remount", "rdonly", "nosuid", "nodev"))


class ShimHandle(MonitorHandle):
    """The engine's view of one shim: a monitor's handle (pid, event lines) plus the control
    pipe the plan and the network's go-ahead go down. Its text events come back as the
    Python monitor's do; "exited" carries the exit code and the raw wait status."""

    is_shim = True

    def __init__(self, pid: int, control_fd: int, events_fd: int, cid: str) -> None:
        super().__init__(pid, events_fd)
        self.control_fd = control_fd
        self.cid = cid

    def send_plan(self, blob: bytes) -> None:
        _write_all(self.control_fd, len(blob).to_bytes(4, "little") + blob)

    def go(self) -> None:
        _write_all(self.control_fd, b"g")

    def _event(self, line: bytes) -> dict:
        kind, _, rest = line.decode(errors="replace").partition(" ")
        if kind in ("ready", "started"):
            return {"event": kind, "pid": int(rest)}
        if kind == "failed":
            code, _, message = rest.partition(" ")
            return {"event": "failed", "exit_code": int(code) if code.isdigit() else 127,
                    "message": message}
        if kind == "exited":
            status = int(rest)
            return {"event": "exited", "status": status, "exit_code": exit_code_of(status)}
        return {"event": kind, "message": rest}

    def close(self) -> None:
        if self.control_fd >= 0:
            os.close(self.control_fd)
            self.control_fd = -1
        super().close()

    def discard(self) -> None:
        """Not needed after all: the shim kills its waiting process and exits."""
        self.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def spawn(shim: str, cid: str, procs_files: list[str], owner_pidfd: int | None) -> ShimHandle:
    """Start a shim for container `cid`; its container process joins the cgroup at once and
    waits for the plan (`ShimHandle.send_plan`)."""
    control_r, control_w = os.pipe2(os.O_CLOEXEC)
    events_r, events_w = os.pipe2(os.O_CLOEXEC)
    # Above the target numbers, so that no dup2 below overwrites a source of a later one.
    control_r, events_w = _above(control_r, 10), _above(events_w, 10)
    if owner_pidfd is not None:
        owner_pidfd = _above(owner_pidfd, 10, close=False)
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDWR, 0),
               (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2),
               (os.POSIX_SPAWN_DUP2, control_r, 3), (os.POSIX_SPAWN_DUP2, events_w, 4)]
    if owner_pidfd is not None:
        actions.append((os.POSIX_SPAWN_DUP2, owner_pidfd, 5))
    try:
        pid = os.posix_spawn(shim, [shim, "owner" if owner_pidfd is not None else "-",
                                    *procs_files], {}, file_actions=actions, setsid=True)
    finally:
        os.close(control_r)
        os.close(events_w)
        if owner_pidfd is not None:
            os.close(owner_pidfd)
    return ShimHandle(pid, control_w, events_r, cid)


def _above(fd: int, low: int, close: bool = True) -> int:
    """A close-on-exec copy of `fd` numbered `low` or more (the original closed if `close`)."""
    copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    if close:
        os.close(fd)
    return copy


def read_exit(path: Path) -> tuple[int, float] | None:
    """(wait status, finished_at) as the shim recorded them, None if it has not."""
    try:
        status, finished = path.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(status), float(finished)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
