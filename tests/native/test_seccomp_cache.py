"""The default seccomp program kept on disk (native/seccomp/cache.py) is the one compiled."""

from __future__ import annotations

from pytest_isobox.native import seccomp
from pytest_isobox.native.capabilities import DOCKER_DEFAULT_CAPABILITIES
from pytest_isobox.native.seccomp.cache import cached_program

CAPS = tuple(sorted(DOCKER_DEFAULT_CAPABILITIES))


def test_a_program_is_compiled_once_then_read_back(tmp_path):
    compiled = []

    def compile_program() -> bytes:
        compiled.append(1)
        return seccomp._compile_default(CAPS)

    first = cached_program(CAPS, compile_program, tmp_path)
    second = cached_program(CAPS, compile_program, tmp_path)
    assert first == second == seccomp._compile_default(CAPS)
    assert len(compiled) == 1
    assert [p.name.startswith("seccomp-") for p in tmp_path.iterdir()] == [True]


def test_other_capabilities_have_their_own_program(tmp_path):
    more = tuple(sorted((*CAPS, "SYS_PTRACE")))  # (Docker's profile allows it more calls)
    assert cached_program(more, lambda: seccomp._compile_default(more), tmp_path) \
        == seccomp._compile_default(more) != seccomp._compile_default(CAPS)
    assert len(list(tmp_path.iterdir())) == 1


def test_a_damaged_file_is_compiled_again(tmp_path):
    cached_program(CAPS, lambda: seccomp._compile_default(CAPS), tmp_path)
    (kept,) = tmp_path.iterdir()
    kept.write_bytes(b"short")
    assert cached_program(CAPS, lambda: seccomp._compile_default(CAPS), tmp_path) \
        == seccomp._compile_default(CAPS)


def test_an_unwritable_cache_only_means_compiling(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert cached_program(CAPS, lambda: seccomp._compile_default(CAPS), blocked / "sub") \
        == seccomp._compile_default(CAPS)
