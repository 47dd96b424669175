"""The holder: one long-lived process per isobox home that owns the rootless namespaces.

Every engine process of a user (each xdist worker, each `isobox` command) must put its
containers into the same user namespace and the same helper network namespace, or containers
started by two processes could never meet on a named network. So, like Podman's rootless
pause process, a small holder process unshares them once and stays; engine processes find
it in the home's runtime directory and join its /proc/PID/ns/{user,net} with setns.

Files in the runtime directory (mode 0700, the user's own):
- `userns.lock`: taken (flock) to find, start or retire the holder, so all three are atomic.
- `userns.json`: the holder's pid and start time (a pid alone could name a later process),
  whether outbound works (and why not) and whether host loopback is allowed.
- `userns.sock`: the holder listens here. Every process using the namespaces keeps one
  connection open (an engine, each container's monitor). The holder counts them; when the
  last one closes, it takes the lock, accepts any connection made meanwhile, and otherwise
  removes its files and exits, taking slirp4netns with it. So nothing is left once no engine
  and no container of the home remains, and a holder killed with SIGKILL is replaced by the
  next engine (its start time no longer matches, or its socket refuses).

The holder is started by double fork and setsid, so it outlives the engine that started it
and no terminal's ^C reaches it; its creator writes its id maps (newuidmap) in between.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from pytest_isobox.engine import EngineUnavailable
from pytest_isobox.locks import HostLock
from pytest_isobox.native import linux
from pytest_isobox.native.forked import close_fds_except, fork_child
from pytest_isobox.native.rootless import outbound
from pytest_isobox.native.rootless.idmap import IdMapping
from pytest_isobox.polling import readable
from pytest_isobox.processes import ProcessIdentity

LOCK, STATE, SOCKET = "userns.lock", "userns.json", "userns.sock"
HOLDER_LOG, SLIRP_LOG = "holder.log", "slirp4netns.log"  # why the last one failed
NAME = "isobox-userns"


@dataclass(frozen=True)
class HolderInfo:
    """What `userns.json` records about a running holder."""

    pid: int
    start: int  # clock ticks since boot (ProcessIdentity.start)
    host_loopback: bool
    outbound: str  # empty when containers have outbound network; else why they have none

    def alive(self) -> bool:
        return ProcessIdentity(self.pid, self.start).alive()


def locked(runtime_dir: Path) -> HostLock:
    """The holder lock of `runtime_dir` (released if its holder dies)."""
    return HostLock(runtime_dir / LOCK)


def _dir_path(dir_fd: int, name: str) -> str:
    """A path to `name` in the directory `dir_fd` short enough for a unix socket address
    (108 bytes), however long the home's path is."""
    return f"/proc/self/fd/{dir_fd}/{name}"


def connect(runtime_dir: Path) -> socket.socket | None:
    """A connection to the holder's socket (which keeps the holder alive while open);
    None if no holder listens there."""
    dir_fd = os.open(runtime_dir, os.O_PATH | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(_dir_path(dir_fd, SOCKET))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    finally:
        os.close(dir_fd)
    return sock


def read_info(runtime_dir: Path) -> HolderInfo | None:
    """The recorded holder, if its process still runs."""
    try:
        info = HolderInfo(**json.loads((runtime_dir / STATE).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return info if info.alive() else None


def join(runtime_dir: Path, mapping: IdMapping, host_loopback: bool = False,
         ) -> tuple[HolderInfo, socket.socket]:
    """The home's holder, started if none runs, and a connection that keeps it alive.

    A running holder whose host loopback setting differs is refused (EngineUnavailable):
    sharing it would silently grant or deny containers the host's 127.0.0.1."""
    runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with locked(runtime_dir):
        info = read_info(runtime_dir)
        conn = connect(runtime_dir) if info is not None else None
        if info is None or conn is None:
            info = _start(runtime_dir, mapping, host_loopback)
            conn = connect(runtime_dir)
            if conn is None:
                raise EngineUnavailable(f"the namespace holder {info.pid} does not listen on "
                                        f"{runtime_dir / SOCKET}")
    if info.host_loopback != host_loopback:
        conn.close()
        allowed = {True: "allows", False: "forbids"}
        raise EngineUnavailable(
            f"the rootless namespaces of {runtime_dir} (holder pid {info.pid}) "
            f"{allowed[info.host_loopback]} host loopback and you asked for the opposite "
            f"({outbound.HOST_LOOPBACK_ENV}); use another --isobox-home or wait until its "
            "containers are gone")
    return info, conn


def write_id_maps(pid: int, mapping: IdMapping) -> None:
    """Give the user namespace of `pid` its uid and gid maps (done once, from outside).

    Subordinate ranges go through the setuid helpers newuidmap/newgidmap (Debian's uidmap),
    which check them against /etc/subuid and /etc/subgid. A single-id map is written directly:
    the kernel allows mapping one's own id after setgroups is denied.
    """
    if mapping.single:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(mapping.uids[0].line())
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(mapping.gids[0].line())
        return
    for tool, ranges in (("newuidmap", mapping.uids), ("newgidmap", mapping.gids)):
        path = shutil.which(tool)
        if path is None:
            raise EngineUnavailable(f"rootless containers with subordinate ids need {tool} "
                                    "(Debian: apt-get install uidmap)")
        args = [str(n) for r in ranges for n in (r.inside, r.outside, r.count)]
        done = subprocess.run([path, str(pid), *args], check=False, capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise EngineUnavailable(f"{tool} {pid} {' '.join(args)} failed: "
                                    f"{done.stderr.strip() or done.returncode}")


def _start(runtime_dir: Path, mapping: IdMapping, host_loopback: bool) -> HolderInfo:
    """Start a holder (the caller holds the lock); its info, also written to `userns.json`."""
    for stale in (STATE, SOCKET, HOLDER_LOG):
        with contextlib.suppress(FileNotFoundError):
            (runtime_dir / stale).unlink()
    to_r, to_w = os.pipe2(os.O_CLOEXEC)
    from_r, from_w = os.pipe2(os.O_CLOEXEC)
    middle = os.fork()
    if middle == 0:
        code = 1
        try:
            os.setsid()
            if os.fork() == 0:
                try:
                    linux.set_process_name(linux.PROCESS_NAME_PREFIX + "holder")
                    _Holder(runtime_dir, to_r, from_w, host_loopback).run()
                    code = 0
                except BaseException:  # noqa: BLE001 - the creator names the log
                    (runtime_dir / HOLDER_LOG).write_text(traceback.format_exc())
                finally:
                    os._exit(code)
            code = 0
        finally:
            os._exit(code)
    os.waitpid(middle, 0)
    os.close(to_r)
    os.close(from_w)
    try:
        with open(from_r, "rb", closefd=False) as replies:
            first = replies.readline()
            if not first.startswith(b"u "):
                raise EngineUnavailable(_failure(runtime_dir) or (
                    "cannot create a user namespace (unshare(CLONE_NEWUSER) failed: see "
                    "user.max_user_namespaces and, on Ubuntu, "
                    "kernel.apparmor_restrict_unprivileged_userns)"))
            pid = int(first.split()[1])
            try:
                write_id_maps(pid, mapping)
            except BaseException:
                os.kill(pid, signal.SIGKILL)
                raise
            os.write(to_w, b"m")
            ready = replies.readline()
        if not ready.startswith(b"n "):
            raise EngineUnavailable(_failure(runtime_dir) or "cannot create the helper network "
                                    "namespace in the user namespace")
        holder = ProcessIdentity.of(pid)
        if holder is None:
            raise EngineUnavailable(f"the namespace holder {pid} died while starting")
        info = HolderInfo(pid, holder.start, host_loopback, ready[2:].decode().strip())
        tmp = runtime_dir / f".{STATE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(info)))
        os.replace(tmp, runtime_dir / STATE)
        return info
    finally:
        os.close(to_w)
        os.close(from_r)


def _failure(runtime_dir: Path) -> str:
    """The last line of a failed holder's traceback, for the creator's error."""
    try:
        lines = (runtime_dir / HOLDER_LOG).read_text().strip().splitlines()
    except FileNotFoundError:
        return ""
    return f"the namespace holder failed: {lines[-1]} (see {runtime_dir / HOLDER_LOG})" \
        if lines else ""


class _Holder:
    """The holder process: make the namespaces, then count connections until none is left."""

    def __init__(self, runtime_dir: Path, control: int, replies: int, host_loopback: bool,
                 ) -> None:
        self.runtime_dir = runtime_dir
        self.control, self.replies = control, replies
        self.host_loopback = host_loopback
        self.slirp_pid = 0
        self.slirp_exit = -1

    def run(self) -> None:
        close_fds_except({self.control, self.replies})
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGTSTP):
            signal.signal(sig, signal.SIG_IGN)
        Path("/proc/self/comm").write_text(NAME)  # what ps shows
        why_not = outbound.reason_unavailable()
        go = self._fork_slirp() if why_not is None else -1  # must stay in the host's userns
        linux.unshare(linux.CLONE_NEWUSER)
        os.write(self.replies, f"u {os.getpid()}\n".encode())
        if os.read(self.control, 1) != b"m":
            return
        linux.unshare(linux.CLONE_NEWNET)
        linux.interface_up("lo")
        Path("/proc/sys/net/ipv4/ip_forward").write_text("0")  # copied from the host's
        if go >= 0:
            why_not = self._start_outbound(go)
        listener = self._listen()
        os.write(self.replies, f"n {why_not or ''}\n".encode())
        os.close(self.replies)
        os.close(self.control)
        self._serve(listener)

    # -- outbound

    def _fork_slirp(self) -> int:
        """Fork slirp4netns's process now, in the host's user namespace (it joins ours only to
        make tap0); it execs once told to. Returns the pipe that tells it."""
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        self.ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, self.slirp_exit = os.pipe2(os.O_CLOEXEC)
        holder = os.getpid()

        def slirp() -> int:
            if os.read(go_r, 1) != b"g":
                return 127
            log = os.open(self.runtime_dir / SLIRP_LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                          0o600)
            os.dup2(log, 1)
            os.dup2(log, 2)
            for fd in (ready_w, exit_r):  # (what slirp4netns gets across exec)
                os.set_inheritable(fd, True)
            close_fds_except({ready_w, exit_r})
            argv = outbound.slirp_command(holder, ready_w, exit_r, self.host_loopback)
            os.execv(argv[0], argv)

        pid = fork_child(slirp, name="slirp", failure_code=127)
        os.close(go_r)
        os.close(ready_w)
        os.close(exit_r)
        self.slirp_pid = pid
        return go_w

    def _start_outbound(self, go: int) -> str:
        """Let slirp4netns make tap0, then route the bridges out; why not, on failure."""
        os.write(go, b"g")
        os.close(go)
        ready = readable([self.ready_r], outbound.READY_TIMEOUT)
        answer = os.read(self.ready_r, 1) if ready else b""
        os.close(self.ready_r)
        if answer != b"1":
            self._stop_slirp()
            log = (self.runtime_dir / SLIRP_LOG).read_text(errors="replace").strip()
            last = log.splitlines()[-1] if log else "no output"
            return f"slirp4netns did not start: {last} (see {self.runtime_dir / SLIRP_LOG})"
        try:
            outbound.route_out()
        except (OSError, subprocess.SubprocessError) as exc:
            self._stop_slirp()
            return str(exc)
        return ""

    def _stop_slirp(self) -> None:
        if self.slirp_exit >= 0:
            os.close(self.slirp_exit)  # slirp4netns exits when its exit fd closes
            self.slirp_exit = -1
        if self.slirp_pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.slirp_pid, 0)
            self.slirp_pid = 0

    # -- connections

    def _listen(self) -> socket.socket:
        dir_fd = os.open(self.runtime_dir, os.O_PATH | os.O_CLOEXEC)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        listener.bind(_dir_path(dir_fd, SOCKET))
        os.close(dir_fd)
        listener.listen(64)
        listener.setblocking(False)
        return listener

    def _serve(self, listener: socket.socket) -> None:
        """Until no connection is left (checked under the lock, see the module docstring)."""
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        clients: dict[int, socket.socket] = {}

        def accept_all() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    return
                clients[conn.fileno()] = conn
                poller.register(conn, select.POLLIN)

        while True:
            if not clients:
                with locked(self.runtime_dir):
                    accept_all()
                    if not clients:
                        self._retire()
                        break
            for fd, _ in poller.poll():
                if fd == listener.fileno():
                    accept_all()
                    continue
                conn = clients[fd]
                try:
                    data = conn.recv(64)
                except OSError:
                    data = b""
                if not data:  # (clients never write: this is its hang-up)
                    poller.unregister(fd)
                    del clients[fd]
                    conn.close()
        listener.close()
        self._stop_slirp()

    def _retire(self) -> None:
        """Remove the holder's files if they are still this holder's (caller has the lock)."""
        try:
            recorded = json.loads((self.runtime_dir / STATE).read_text()).get("pid")
        except (OSError, ValueError):
            recorded = None
        if recorded in (None, os.getpid()):
            for name in (STATE, SOCKET):
                with contextlib.suppress(FileNotFoundError):
                    (self.runtime_dir / name).unlink()
