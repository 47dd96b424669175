"""The engine's side of isobox-shim, the small C monitor + container init (isobox-shim.c).

Why a C program: forking the engine's ~45 MB Python process for a monitor, and that again for
the container, costs several milliseconds of CPU per container on small machines; the shim is
spawned with vfork + exec and does the same work in a few hundred microseconds. It makes no
decision of its own: `encode_plan` sends it the container's start plan (startplan.py), the
same steps the Python executor (planrunner.py) carries out, and the shim carries them out.

The binary is compiled once per source version from the C file beside this module into a
cache shared by every home of the user (`build_dir`; a C compiler is needed: Debian's gcc,
which `scripts/install-deps` installs). Without one, or with ISOBOX_SHIM=0, the engine uses the
Python monitor instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from pytest_isobox.native import startplan
from pytest_isobox.native.monitor import MonitorHandle
from pytest_isobox.native.runtime import ContainerPlan, exit_code_of
from pytest_isobox.sha256 import sha256  # (the C sha256 alone: no OpenSSL load)

SOURCE = Path(__file__).with_name("isobox-shim.c")
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
    digest = sha256(source).hexdigest()[:16]
    target = build_dir / f"isobox-shim-{digest}"
    if target.exists():
        return str(target)
    import shutil  # (only to compile it: a run finds it built)
    import subprocess

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
    """Whether the shim can start this container: detached, no terminal (rootful or
    rootless: the shim enters the user namespace itself)."""
    return not plan.process.tty


def encode_plan(plan: ContainerPlan, *, log: str, exit_file: str, persistent: bool,
                network: bool) -> bytes:
    """The plan as the shim reads it: monitor settings, an empty string, then the container's
    start plan (startplan.py). The shim put the process in its cgroup before the plan."""
    out = ["log", log, "exit", exit_file, "persistent", "1" if persistent else "0", ""]
    out += startplan.encode(startplan.container_steps(plan, wait_network=network,
                                                      wait_cgroup=False))
    return "\0".join(out).encode() + b"\0"


class ShimHandle(MonitorHandle):
    """The engine's view of one shim: a monitor's handle (pid, event lines) plus the control
    pipe the plan and the network's go-ahead go down. Its text events come back as the
    Python monitor's do; "exited" carries the exit code and the raw wait status."""

    is_shim = True
    own_netns = False  # rootless: its network namespace made ahead (see `spawn`)

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


def spawn(shim: str, cid: str, procs_files: list[str], owner_pidfd: int | None,
          userns: tuple[int, int] | None = None, own_netns: bool = False) -> ShimHandle:
    """Start a shim for container `cid`; its container process joins the cgroup at once and
    waits for the plan (`ShimHandle.send_plan`). `userns` (rootless): a user namespace fd the
    shim enters first and a connection to its holder the shim keeps open while it runs (the
    Python monitor's pin); the caller keeps and closes its own fds. `own_netns` (rootless):
    the container will not be on the host's network, so the shim makes its network namespace
    ahead as well (`ShimHandle.own_netns`: a plan on the host's network would fail there)."""
    control_r, control_w = os.pipe2(os.O_CLOEXEC)
    events_r, events_w = os.pipe2(os.O_CLOEXEC)
    # Above the target numbers, so that no dup2 below overwrites a source of a later one.
    control_r, events_w = _above(control_r, 10), _above(events_w, 10)
    copies = [_above(fd, 10, close=False) for fd in (owner_pidfd, *(userns or ()))
              if fd is not None]
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDWR, 0),
               (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2),
               (os.POSIX_SPAWN_DUP2, control_r, 3), (os.POSIX_SPAWN_DUP2, events_w, 4)]
    flags = ""
    targets = iter(copies)
    if owner_pidfd is not None:
        actions.append((os.POSIX_SPAWN_DUP2, next(targets), 5))
        flags += "o"
    if userns is not None:
        actions += [(os.POSIX_SPAWN_DUP2, next(targets), 6),
                    (os.POSIX_SPAWN_DUP2, next(targets), 7)]
        flags += "un" if own_netns else "u"
    try:
        pid = os.posix_spawn(shim, [shim, flags or "-", *procs_files], {},
                             file_actions=actions, setsid=True)
    finally:
        for fd in (control_r, events_w, *copies):
            os.close(fd)
    handle = ShimHandle(pid, control_w, events_r, cid)
    handle.own_netns = userns is not None and own_netns
    return handle


def _above(fd: int, low: int, close: bool = True) -> int:
    """A close-on-exec copy of `fd` numbered `low` or more (the original closed if `close`)."""
    copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    if close:
        os.close(fd)
    return copy


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
