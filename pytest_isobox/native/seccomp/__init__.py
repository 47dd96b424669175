"""Docker's seccomp confinement for native containers: the filter a container's --security-opt
values ask for, and loading it into the process about to exec the container's command.

Every container gets Docker's default profile (default_profile.py) unless it asks for
seccomp=unconfined or a profile of its own; processes exec'd into it get the same filter.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.native import linux
from pytest_isobox.native.capabilities import DOCKER_DEFAULT_CAPABILITIES
from pytest_isobox.native.seccomp import options

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def filter_for(security_opt: list[str],
               capabilities: tuple[str, ...] = DOCKER_DEFAULT_CAPABILITIES) -> bytes | None:
    """The BPF program a container with these --security-opt values and capabilities gets;
    None: unconfined. InvalidSpec names a bad option or profile."""
    chosen = options.parse(security_opt)
    if chosen.seccomp == "unconfined":
        return None
    if chosen.seccomp == "default":
        return _default_filter(tuple(sorted(capabilities)))
    from pytest_isobox.native.seccomp.bpf import compile_filter
    from pytest_isobox.native.seccomp.profile import resolve

    try:
        resolved = resolve(chosen.seccomp, capabilities)
        return None if resolved is None else compile_filter(resolved)
    except InvalidSpec as exc:
        raise InvalidSpec(f"{exc} (in {chosen.profile_source})") from None


def no_new_privs(security_opt: list[str]) -> bool:
    """Whether the container asked for no-new-privileges (execve grants no privileges)."""
    return options.parse(security_opt).no_new_privs


@lru_cache(maxsize=8)
def _default_filter(capabilities: tuple[str, ...]) -> bytes:
    """Compiled once per process, and kept for the next ones (see cache.py): the compiler
    is imported only when no process has compiled this program yet."""
    from pytest_isobox.native.seccomp.cache import cached_program
    from pytest_isobox.native.shim import build_dir

    return cached_program(capabilities, lambda: _compile_default(capabilities), build_dir())


def _compile_default(capabilities: tuple[str, ...]) -> bytes:
    from pytest_isobox.native.seccomp.bpf import compile_filter
    from pytest_isobox.native.seccomp.default_profile import DEFAULT_PROFILE
    from pytest_isobox.native.seccomp.profile import resolve

    return compile_filter(resolve(DEFAULT_PROFILE, capabilities))


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load(program: bytes) -> None:
    """Install `program` on this thread for good (and on what it execs). Without
    no_new_privs set, the kernel wants CAP_SYS_ADMIN: call it before dropping capabilities."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    linux.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
