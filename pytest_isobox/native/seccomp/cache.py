"""The default profile's compiled program, kept on disk for the next processes.

Every container gets Docker's default profile unless it asks otherwise; compiling it (the
profile resolved for the container's capabilities, then assembled into BPF) takes some 3 ms,
and importing the compiler as much again, in every process that starts a container (each
`isobox run`). The program depends only on the compiler's sources, the capabilities, the
machine and the running kernel's version: a file named by a digest of these, in the user's
cache, the shim's build directory (`shim.build_dir`), holds it. A file that cannot be read or
written only means compiling again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from pytest_isobox.images.atomic import write_file_atomic
from pytest_isobox.sha256 import sha256  # (the C sha256 alone: no OpenSSL load)

# what the program is made from: these modules' sources (see the module docstring)
_SOURCES = ("default_profile.py", "profile.py", "bpf.py", "syscalls.py")


def cached_program(capabilities: tuple[str, ...], compile_program: Callable[[], bytes],
                   directory: Path) -> bytes:
    """The program for `capabilities`, from `directory` when compiled before, else compiled
    now and kept there."""
    key = sha256()
    here = Path(__file__).parent
    try:
        for name in _SOURCES:
            key.update((here / name).read_bytes())
    except OSError:
        return compile_program()
    uname = os.uname()
    key.update("\0".join((*capabilities, uname.machine, uname.release)).encode())
    path = directory / f"seccomp-{key.hexdigest()[:32]}.bpf"
    try:
        program = path.read_bytes()
        if program and len(program) % 8 == 0:  # (whole sock_filter instructions)
            return program
    except OSError:
        pass
    program = compile_program()
    with contextlib.suppress(OSError):  # (whole or absent: another process may write it too)
        write_file_atomic(path, program, directory, durable=False)
    return program
