"""Processes in running containers: exec (collected output), exec and run attached to
the caller's terminal."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

from pytest_isobox.engine import ContainerError, ContainerSpec, ExecResult, InvalidSpec
from pytest_isobox.native.state import ContainerDir

if TYPE_CHECKING:
    import socket

    from pytest_isobox.native.runtime import ProcessPlan


class ExecRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    def _exec_target(self, container: str) -> tuple[ContainerDir, int]:
        cdir = self._find(container)
        state = self._read_state(cdir)
        fd = self._container_pidfd(state)
        if fd is None:
            raise ContainerError(f"container {cdir.id[:12]} is not running")
        os.close(fd)
        return cdir, state["pid"]

    def _exec_process(self, cdir: ContainerDir, cmd: list[str], env: dict[str, str] | None,
                      user: str | None, workdir: str | None, tty: bool,
                      privileged: bool = False) -> ProcessPlan:
        """The exec'd process; `privileged` (`exec --privileged`) gives it every capability
        this host can grant, whatever the container's, and keeps the container's seccomp
        filter, as dockerd does."""
        from pytest_isobox.native import privileges
        from pytest_isobox.native.runtime import ProcessPlan

        if not cmd:
            raise InvalidSpec("exec needs a command")
        config = cdir.config
        merged = dict(config["env"])
        merged.update(env or {})
        return ProcessPlan(argv=list(cmd), env=merged, workdir=workdir or config["workdir"],
                           user=config["user"] if user is None else user, tty=tty,
                           create_workdir=False,
                           rlimits=dict(config["spec"].get("ulimits") or {}),
                           capabilities=privileges.capability_mask(
                               {**config["spec"], "privileged": True} if privileged
                               else config["spec"]))

    def _fork_exec(self, cdir: ContainerDir, pid: int, process: ProcessPlan,
                   stdio: tuple[int, int, int], error_w: int,
                   console: socket.socket | None = None, die_with_parent: bool = True) -> int:
        from pytest_isobox.native import privileges, seccomp
        from pytest_isobox.native.forked import fork_child
        from pytest_isobox.native.runtime import exec_init

        self._join_pool()  # no fork while another thread works
        cgroup = self._cgroup(cdir.id)
        security_opt = list(cdir.config["spec"].get("security_opt") or ())
        seccomp_filter = privileges.seccomp_filter(cdir.config["spec"])  # the container's
        no_new_privs = seccomp.no_new_privs(security_opt)
        return fork_child(lambda: exec_init(pid, process, stdio, error_w, cgroup.add, console,
                                            seccomp_filter, no_new_privs),
                          name="exec", failure_code=127, die_with_parent=die_with_parent)

    def exec(self, container: str, cmd: list[str], *, env: dict[str, str] | None = None,
             user: str | None = None, workdir: str | None = None,
             privileged: bool = False) -> ExecResult:
        """Run `cmd` in the running container (its namespaces and cgroup), collect output.

        A command that cannot be started gives exit code 126/127 and the reason on stderr.
        """
        from pytest_isobox.native.engine.support import collect_ready
        from pytest_isobox.native.runtime import exit_code_of

        cdir, pid = self._exec_target(container)
        process = self._exec_process(cdir, cmd, env, user, workdir, tty=False,
                                     privileged=privileged)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        error_r, error_w = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            child = self._fork_exec(cdir, pid, process, (null, out_w, err_w), error_w)
        finally:
            for fd in (out_w, err_w, error_w, null):
                os.close(fd)
        outputs = collect_ready({out_r: bytearray(), err_r: bytearray(), error_r: bytearray()})
        _, status = os.waitpid(child, 0)
        code = exit_code_of(status)
        failure = bytes(outputs[error_r])
        stderr = bytes(outputs[err_r])
        if failure:
            text = failure.decode(errors="replace").partition("\n")[2]
            stderr += f"{text}\n".encode()
        return ExecResult(code, bytes(outputs[out_r]), stderr)

    def exec_detached(self, container: str, cmd: list[str], *, env: dict[str, str] | None = None,
                      user: str | None = None, workdir: str | None = None,
                      privileged: bool = False) -> ExecResult:
        """Start `cmd` in the running container and return once it runs (`exec -d`): exit
        code 0, or the 126/127 of a command that could not start with the reason on stderr.
        Its output goes nowhere, as Docker's; it ends with the container at the latest."""
        import threading

        from pytest_isobox.native.engine.support import read_to_end
        from pytest_isobox.native.runtime import exit_code_of

        cdir, pid = self._exec_target(container)
        process = self._exec_process(cdir, cmd, env, user, workdir, tty=False,
                                     privileged=privileged)
        error_r, error_w = os.pipe2(os.O_CLOEXEC)
        null_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        null_w = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
        try:
            # outlives this process (its command ends with the container at the latest)
            child = self._fork_exec(cdir, pid, process, (null_r, null_w, null_w), error_w,
                                    die_with_parent=False)
        finally:
            for fd in (error_w, null_r, null_w):
                os.close(fd)
        try:
            failure = read_to_end(error_r)  # EOF once the command's exec succeeded
        finally:
            os.close(error_r)
        if failure:
            _, status = os.waitpid(child, 0)
            text = failure.decode(errors="replace").partition("\n")[2]
            return ExecResult(exit_code_of(status), b"", f"{text}\n".encode())
        # the forked parent waits for the command: reap it when it ends, from a thread
        threading.Thread(target=os.waitpid, args=(child, 0), daemon=True,
                         name=f"isobox-exec-{cdir.id[:12]}").start()
        return ExecResult(0, b"", b"")

    def exec_attached(self, container: str, cmd: list[str], *, tty: bool, stdin: bool,
                      env: dict[str, str] | None = None, user: str | None = None,
                      workdir: str | None = None, privileged: bool = False) -> int:
        """`exec -i/-t`: the process talks to this process's terminal (a pty when tty)."""
        from pytest_isobox.native.engine.support import read_to_end
        from pytest_isobox.native.runtime import exit_code_of, receive_console
        from pytest_isobox.native.terminal import copy_window_size, raw_terminal, relay_pty

        cdir, pid = self._exec_target(container)
        process = self._exec_process(cdir, cmd, env, user, workdir, tty=tty,
                                     privileged=privileged)
        error_r, error_w = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        console = child_console = None
        if tty:  # the process makes its terminal from the container's devpts, sends the master
            import socket

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
        failure = read_to_end(error_r)
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
        from pytest_isobox.native.monitor import Terminal
        from pytest_isobox.native.terminal import WindowChangeForwarder, raw_terminal

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

