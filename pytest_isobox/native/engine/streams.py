"""Interactive stdio handed to the caller (capability "streams"): an exec whose stdin,
stdout and stderr are pipes (or a tty's master) the caller reads and writes, and a start
whose stdin is a pipe the caller writes. The API server relays them over hijacked
connections (`docker exec -i`, `docker run -i`). What only they need (socket, termios) is
imported by the method that uses it: the facade loads every role, and `isobox run` uses
none of this one."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from pytest_isobox.engine import ContainerState, ProcessStream


def _once(fn: Callable[[], int]) -> Callable[[], int]:
    """`fn` run the first time, its result given to every later caller."""
    lock = threading.Lock()
    result: list[int] = []

    def call() -> int:
        with lock:
            if not result:
                result.append(fn())
            return result[0]
    return call


def _failed(code: int, message: str) -> ProcessStream:
    """The stream of a command that could not start: Docker's message on stderr."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    os.close(out_w)
    with contextlib.suppress(OSError):
        os.write(err_w, f"{message}\n".encode())
    os.close(err_w)
    return ProcessStream(None, out_r, err_r, wait=lambda: code)


def _tty_resizer(master: int) -> Callable[[int, int], None]:
    import fcntl
    import struct
    import termios

    def resize(rows: int, columns: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return resize


class StreamsRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    def exec_stream(self, container: str, cmd: list[str], *, tty: bool = False,
                    stdin: bool = False, env: dict[str, str] | None = None,
                    user: str | None = None, workdir: str | None = None) -> ProcessStream:
        import socket

        from pytest_isobox.native.engine.support import read_to_end
        from pytest_isobox.native.runtime import exit_code_of, receive_console

        cdir, pid = self._exec_target(container)
        process = self._exec_process(cdir, cmd, env, user, workdir, tty=tty)
        error_r, error_w = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        theirs, ours = [error_w, null], [error_r]
        console = child_console = None
        in_w = out_r = err_r = None
        try:
            if tty:  # the process makes its terminal in the container, sends us the master
                console, child_console = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                stdio = (null, null, null)
            else:
                in_r = null
                if stdin:
                    in_r, in_w = os.pipe2(os.O_CLOEXEC)
                    theirs.append(in_r)
                    ours.append(in_w)
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                theirs += [out_w, err_w]
                ours += [out_r, err_r]
                stdio = (in_r, out_w, err_w)
            child = self._fork_exec(cdir, pid, process, stdio, error_w, child_console)
        except BaseException:
            for fd in ours:
                os.close(fd)
            if console is not None:
                console.close()
            raise
        finally:
            for fd in theirs:
                os.close(fd)
            if child_console is not None:
                child_console.close()
        master = None
        if console is not None:
            master = receive_console(console)
            console.close()
        failure = read_to_end(error_r)  # EOF once the command's exec succeeded
        os.close(error_r)
        wait = _once(lambda: exit_code_of(os.waitpid(child, 0)[1]))
        if failure:
            for fd in (in_w, out_r, err_r, master):
                if fd is not None:
                    os.close(fd)
            return _failed(wait(), failure.decode(errors="replace").partition("\n")[2])
        if master is not None:
            return ProcessStream(os.dup(master) if stdin else None, master, None, wait,
                                 resize=_tty_resizer(master), pid=child)
        return ProcessStream(in_w, out_r, err_r, wait, pid=child)

    def start_stream(self, container: str, *, stdin: bool = True,
                     output: bool = False) -> ProcessStream:
        from pytest_isobox.native import keeper
        from pytest_isobox.native.monitor import Terminal

        cdir = self._find(container)
        theirs: list[int] = []
        ours: list[int] = []
        in_r = in_w = out_r = err_r = None
        null = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
        theirs.append(null)
        out_w = err_w = null
        if stdin:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            theirs.append(in_r)
            ours.append(in_w)
        if output:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            theirs += [out_w, err_w]
            ours += [out_r, err_r]
        keeper.clear_stopped(cdir.path)
        try:
            state: ContainerState = self._start(cdir, Terminal(stdin=in_r, stdout=out_w,
                                                                stderr=err_w))
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        if keeper.needed(cdir.config["spec"], cdir.config.get("image_config") or {}):
            self._spawn_keeper(cdir.id)
        return ProcessStream(in_w, out_r, err_r, wait=_once(lambda: self.wait(cdir.id)),
                             pid=state.pid or 0)

    def resize(self, container: str, rows: int, columns: int) -> None:
        """A tty container's terminal size (`docker run -it` resized): set on its PID 1's
        terminal, which signals the foreground process group SIGWINCH as a real one does."""
        from pytest_isobox.engine import ContainerError

        st = self.state(container)
        if not st.running or not st.pid:
            raise ContainerError(f"container {st.id[:12]} is not running")
        try:
            fd = os.open(f"/proc/{st.pid}/fd/0", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            return  # no terminal to resize
        try:
            if os.isatty(fd):
                _tty_resizer(fd)(rows, columns)
        finally:
            os.close(fd)
