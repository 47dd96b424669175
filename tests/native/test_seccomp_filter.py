"""The seccomp filter as a program: Docker's default profile and users' profiles compiled to
classic BPF, run here by a small BPF interpreter on chosen system calls, and checked against
libseccomp's own compilation of the same rules when libseccomp is installed."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import json
import os
import platform
import re
import struct
from pathlib import Path

import pytest

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.native import seccomp
from pytest_isobox.native.capabilities import DOCKER_DEFAULT_CAPABILITIES
from pytest_isobox.native.seccomp import bpf, syscalls
from pytest_isobox.native.seccomp.default_profile import DEFAULT_PROFILE
from pytest_isobox.native.seccomp.profile import (
    RET_ALLOW,
    RET_ERRNO,
    RET_KILL_THREAD,
    applicable_entries,
    resolve,
)

X86_64, I386, AARCH64, ARM = (bpf.AUDIT_ARCH[a] for a in ("x86_64", "x86", "aarch64", "arm"))
X32_BIT = syscalls.X32_SYSCALL_BIT
EPERM = RET_ERRNO | errno.EPERM
ENOSYS = RET_ERRNO | errno.ENOSYS
KERNEL = (6, 1)


# --------------------------------------------------------------------------- the interpreter

def run_filter(program: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """What the kernel's classic BPF would return for this struct seccomp_data."""
    return trace_filter(program, nr, arch, args)[0]


def trace_filter(program: bytes, nr: int, arch: int,
                 args: tuple[int, ...] = ()) -> tuple[int, int]:
    """(return value, instructions executed)."""
    data = struct.pack("=IIQ6Q", nr & 0xFFFFFFFF, arch, 0, *(list(args) + [0] * 6)[:6])
    words = {off: struct.unpack_from("=I", data, off)[0] for off in range(0, len(data), 4)}
    insns = _decoded(program)
    pc = acc = steps = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        steps += 1
        if code == bpf.LD_ABS:
            acc = words[k]
        elif code == bpf.AND_K:
            acc &= k
        elif code == bpf.JA:
            pc += k
        elif code == bpf.RET_K:
            return k, steps
        elif code == bpf.JEQ:
            pc += jt if acc == k else jf
        elif code == bpf.JGT:
            pc += jt if acc > k else jf
        elif code == bpf.JGE:
            pc += jt if acc >= k else jf
        elif code == bpf.JSET:
            pc += jt if acc & k else jf
        else:
            raise AssertionError(f"unexpected opcode {code:#x} at {pc - 1}")


@functools.lru_cache(maxsize=16)
def _decoded(program: bytes) -> list[tuple[int, int, int, int]]:
    return list(struct.iter_unpack("=HBBI", program))


def compiled(profile: dict, arch: str = "x86_64",
             caps: tuple[str, ...] = DOCKER_DEFAULT_CAPABILITIES) -> bytes:
    resolved = resolve(profile, caps, arch=arch, kernel=KERNEL)
    assert resolved is not None
    return bpf.compile_filter(resolved)


@pytest.fixture(scope="module")
def default_x86() -> bytes:
    return compiled(DEFAULT_PROFILE)


def nr(name: str, arch: str = "x86_64") -> int:
    return syscalls.table(arch)[name]


# --------------------------------------------------------------------------- Docker's profile

@pytest.mark.parametrize(("name", "args", "expected"), [
    ("read", (), RET_ALLOW), ("write", (), RET_ALLOW), ("execve", (), RET_ALLOW),
    ("exit_group", (), RET_ALLOW), ("setuid", (), RET_ALLOW), ("capset", (), RET_ALLOW),
    ("prctl", (), RET_ALLOW), ("setgroups", (), RET_ALLOW), ("chroot", (), RET_ALLOW),
    ("arch_prctl", (), RET_ALLOW), ("ptrace", (), RET_ALLOW), ("futex_waitv", (), RET_ALLOW),
    ("unshare", (), EPERM), ("mount", (), EPERM), ("setns", (), EPERM), ("keyctl", (), EPERM),
    ("add_key", (), EPERM), ("kexec_load", (), EPERM), ("reboot", (), EPERM),
    ("bpf", (), EPERM), ("open_by_handle_at", (), EPERM), ("swapon", (), EPERM),
    ("settimeofday", (), EPERM), ("init_module", (), EPERM), ("userfaultfd", (), EPERM),
    ("clone3", (), ENOSYS),
    ("clone", (0x01200011,), RET_ALLOW),  # what fork() passes
    ("clone", (0x003D0F00,), RET_ALLOW),  # what pthread_create passes
    ("clone", (0x10000000 | 17,), EPERM),  # CLONE_NEWUSER
    ("clone", (0x40000000,), EPERM),  # CLONE_NEWNET
    ("clone", (0x00020000,), EPERM),  # CLONE_NEWNS
    ("clone", (0xFFFFFFFF_00000011,), RET_ALLOW),  # only the low word holds flags
    ("personality", (0x0,), RET_ALLOW), ("personality", (0x8,), RET_ALLOW),
    ("personality", (0x20000,), RET_ALLOW), ("personality", (0x20008,), RET_ALLOW),
    ("personality", (0xFFFFFFFF,), RET_ALLOW), ("personality", (0x0400000,), EPERM),
    ("personality", (0x1_00000000,), EPERM), ("personality", (0x1_FFFFFFFF,), EPERM),
    ("socket", (2, 1, 0), RET_ALLOW), ("socket", (1, 1, 0), RET_ALLOW),
    ("socket", (40, 1, 0), EPERM),  # AF_VSOCK
])
def test_default_profile_on_x86_64(default_x86, name, args, expected):
    assert run_filter(default_x86, nr(name), X86_64, args) == expected


def test_a_foreign_architecture_is_killed(default_x86):
    assert run_filter(default_x86, 0, AARCH64) == RET_KILL_THREAD
    assert run_filter(default_x86, 0, 0x12345678) == RET_KILL_THREAD


def test_i386_calls_have_their_own_numbers(default_x86):
    assert run_filter(default_x86, nr("socketcall", "x86"), I386) == RET_ALLOW
    assert run_filter(default_x86, nr("unshare", "x86"), I386) == EPERM
    # x86_64's unshare (272) is i386's fadvise64_64, allowed there
    assert run_filter(default_x86, nr("unshare"), I386) == RET_ALLOW
    assert run_filter(default_x86, nr("personality", "x86"), I386, (0x40000,)) == EPERM
    assert run_filter(default_x86, nr("personality", "x86"), I386, (0x8,)) == RET_ALLOW


def test_x32_calls_never_reach_the_x86_64_rules(default_x86):
    assert run_filter(default_x86, nr("read", "x32"), X86_64) == RET_ALLOW
    assert run_filter(default_x86, nr("execve", "x32"), X86_64) == RET_ALLOW  # 512 + 8
    assert run_filter(default_x86, nr("unshare", "x32"), X86_64) == EPERM
    # x86_64's execve number with the x32 bit is no x32 call: denied, not allowed
    assert run_filter(default_x86, X32_BIT | nr("execve"), X86_64) == EPERM
    assert run_filter(default_x86, X32_BIT | nr("clone3"), X86_64) == ENOSYS


def test_numbers_above_the_profile_get_enosys(default_x86):
    highest = max(nr(n) for e in DEFAULT_PROFILE["syscalls"] for n in e["names"]
                  if n in syscalls.table("x86_64"))
    assert run_filter(default_x86, highest, X86_64) == RET_ALLOW
    assert run_filter(default_x86, highest + 1, X86_64) == ENOSYS
    assert run_filter(default_x86, 0xFFFFFFFF, X86_64) == ENOSYS  # syscall(-1)
    assert run_filter(default_x86, highest + 1, I386) == ENOSYS


def test_capabilities_choose_the_entries():
    with_admin = compiled(DEFAULT_PROFILE, caps=(*DOCKER_DEFAULT_CAPABILITIES, "SYS_ADMIN"))
    assert run_filter(with_admin, nr("unshare"), X86_64) == RET_ALLOW
    assert run_filter(with_admin, nr("mount"), X86_64) == RET_ALLOW
    assert run_filter(with_admin, nr("clone"), X86_64, (0x10000000,)) == RET_ALLOW
    assert run_filter(with_admin, nr("clone3"), X86_64) == RET_ALLOW
    without_chroot = compiled(DEFAULT_PROFILE, caps=("CHOWN",))
    assert run_filter(without_chroot, nr("chroot"), X86_64) == EPERM


def test_aarch64_and_arm():
    program = compiled(DEFAULT_PROFILE, arch="aarch64")
    assert run_filter(program, nr("read", "aarch64"), AARCH64) == RET_ALLOW
    assert run_filter(program, nr("unshare", "aarch64"), AARCH64) == EPERM
    assert run_filter(program, nr("clone", "aarch64"), AARCH64, (0x10000000,)) == EPERM
    assert run_filter(program, nr("clone", "aarch64"), AARCH64, (0x01200011,)) == RET_ALLOW
    assert run_filter(program, nr("set_tls", "arm"), ARM) == RET_ALLOW
    assert run_filter(program, nr("clone", "arm"), ARM, (0x10000000,)) == EPERM
    assert run_filter(program, nr("read"), X86_64) == RET_KILL_THREAD


def test_the_tree_is_shallow(default_x86):
    """Every x86_64 call is decided within a few dozen instructions, not hundreds."""
    steps = [trace_filter(default_x86, n, X86_64)[1] for n in range(470)]
    assert max(steps) <= 24
    assert len(default_x86) // 8 < 1000


def test_filter_for_reads_the_options():
    assert seccomp.filter_for(["seccomp=unconfined"]) is None
    assert seccomp.filter_for(["seccomp:unconfined"]) is None
    default = seccomp.filter_for([])
    assert default and len(default) % 8 == 0
    assert seccomp.filter_for(["seccomp=builtin"]) == default
    assert seccomp.filter_for(["apparmor=docker-default", "label=disable", "disable",
                               "no-new-privileges"]) == default
    assert seccomp.no_new_privs(["no-new-privileges"]) is True
    assert seccomp.no_new_privs(["no-new-privileges:true"]) is True
    assert seccomp.no_new_privs(["no-new-privileges=false"]) is False
    assert seccomp.no_new_privs([]) is False


@pytest.mark.parametrize(("opt", "message"), [
    ("seccomp", 'invalid --security-opt 1: "seccomp"'),
    ("bogus=1", 'invalid --security-opt 2: "bogus=1"'),
    ("no-new-privileges=maybe", 'invalid --security-opt 2: "no-new-privileges=maybe"'),
    ("seccomp=/nonexistent/profile.json", "opening seccomp profile (/nonexistent/profile.json)"),
])
def test_bad_options_are_named(opt, message):
    with pytest.raises(InvalidSpec) as err:
        seccomp.filter_for([opt])
    assert message.replace('"', "'") in str(err.value).replace('"', "'")


def test_a_profile_file(tmp_path: Path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"name": "kill", "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
        ]}))
    program = seccomp.filter_for([f"seccomp={path}"])
    assert program is not None
    assert run_filter(program, nr("mkdir"), X86_64) == RET_ERRNO | 13
    assert run_filter(program, nr("mkdir", "x86"), I386) == RET_ERRNO | 13
    assert run_filter(program, nr("kill"), X86_64, (1, 9)) == EPERM
    assert run_filter(program, nr("kill"), X86_64, (1, 15)) == RET_ALLOW
    assert run_filter(program, nr("read"), X86_64) == RET_ALLOW
    assert run_filter(program, 1000, X86_64) == RET_ALLOW  # no ENOSYS stub when allowing
    assert run_filter(program, X32_BIT, X86_64) == RET_KILL_THREAD  # x32 not in the filter
    assert seccomp.filter_for([f"seccomp={path.read_text()}"]) == program


def test_an_empty_profile_means_unconfined():
    assert seccomp.filter_for(["seccomp={}"]) is None


@pytest.mark.parametrize(("profile", "message"), [
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "unsupported action 'SCMP_ACT_NOTIFY'"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}, "'architectures' and 'archMap'"),
    ({"defaultAction": "SCMP_ACT_ERRNO",
      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]},
     "unknown operator 'SCMP_CMP_ABOUT'"),
])
def test_bad_profiles_are_named(profile, message):
    with pytest.raises(InvalidSpec, match=re.escape(message)):
        seccomp.filter_for([f"seccomp={json.dumps(profile)}"])


def test_a_malformed_profile_file_is_named(tmp_path: Path):
    path = tmp_path / "odd.json"
    path.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [5]}')
    with pytest.raises(InvalidSpec, match=f"seccomp profile: malformed .*in {path}"):
        seccomp.filter_for([f"seccomp={path}"])
    path.write_text('{"defaultAction": ')
    with pytest.raises(InvalidSpec, match=f"decoding seccomp profile {path} failed"):
        seccomp.filter_for([f"seccomp={path}"])


def _args_profile(op: str, value: int, value_two: int = 0) -> dict:
    return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 2, "value": value, "valueTwo": value_two, "op": op}]}]}


@pytest.mark.parametrize(("op", "value", "value_two", "allowed", "denied"), [
    ("SCMP_CMP_GT", 0x1_00000005, 0, [0x1_00000006, 0x2_00000000], [0x1_00000005, 0x5, 0]),
    ("SCMP_CMP_GE", 0x1_00000005, 0, [0x1_00000005, 0x2_00000000], [0x1_00000004, 0x5]),
    ("SCMP_CMP_LT", 0x1_00000005, 0, [0x1_00000004, 0x5, 0], [0x1_00000005, 0x2_00000000]),
    ("SCMP_CMP_LE", 0x1_00000005, 0, [0x1_00000005, 0x7], [0x1_00000006, 0x2_00000000]),
    ("SCMP_CMP_EQ", 0x1_00000005, 0, [0x1_00000005], [0x5, 0x2_00000005]),
    ("SCMP_CMP_NE", 0x1_00000005, 0, [0x5, 0x2_00000005], [0x1_00000005]),
    ("SCMP_CMP_MASKED_EQ", 0xF0_000000F0, 0x10_00000020, [0x1F_0000002F, 0x10_00000020],
     [0x10_00000010, 0x20_00000020]),
])
def test_64_bit_argument_comparisons(op, value, value_two, allowed, denied):
    program = compiled(_args_profile(op, value, value_two))
    for arg in allowed:
        assert run_filter(program, nr("read"), X86_64, (0, 0, arg)) == RET_ALLOW, hex(arg)
    for arg in denied:
        assert run_filter(program, nr("read"), X86_64, (0, 0, arg)) == EPERM, hex(arg)


def test_repeated_argument_index_means_any_of_them():
    """runc turns conditions on one argument into rules of their own (either may match)."""
    program = compiled({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]})
    assert run_filter(program, nr("read"), X86_64, (1,)) == RET_ALLOW
    assert run_filter(program, nr("read"), X86_64, (2,)) == RET_ALLOW
    assert run_filter(program, nr("read"), X86_64, (3,)) == EPERM


def test_far_jumps_are_bridged():
    """Hundreds of argument rules push targets past the 255 a jump can reach."""
    rules = [{"names": [name], "action": "SCMP_ACT_ALLOW",
              "args": [{"index": 0, "value": i, "op": "SCMP_CMP_EQ"},
                       {"index": 1, "value": i, "op": "SCMP_CMP_GE"}]}
             for i, name in enumerate(sorted(syscalls.table("x86_64"))[:200])]
    program = compiled({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules})
    assert any(code == bpf.JA for code, *_ in struct.iter_unpack("=HBBI", program))
    for i, name in enumerate(sorted(syscalls.table("x86_64"))[:200]):
        assert run_filter(program, nr(name), X86_64, (i, i + 1)) == RET_ALLOW, name
        assert run_filter(program, nr(name), X86_64, (i + 1, i + 1)) == EPERM, name


# --------------------------------------------------------------------------- against references

HEADERS = Path("/usr/include/x86_64-linux-gnu/asm")


@pytest.mark.skipif(not HEADERS.is_dir(), reason="no x86 uapi headers (linux-libc-dev)")
@pytest.mark.parametrize(("arch", "header", "base"), [
    ("x86_64", "unistd_64.h", 0), ("x86", "unistd_32.h", 0), ("x32", "unistd_x32.h", X32_BIT)])
def test_tables_match_the_kernel_headers(arch, header, base):
    text = (HEADERS / header).read_text()
    found = {m[0]: int(m[1]) + base for m in
             re.findall(r"#define __NR_(\w+) (?:\(__X32_SYSCALL_BIT \+ )?(\d+)", text)}
    assert found
    table = syscalls.table(arch)
    assert {n: table.get(n) for n in found} == found


_LIB = ctypes.util.find_library("seccomp")
needs_libseccomp = pytest.mark.skipif(_LIB is None, reason="libseccomp is not installed")
SCMP_ARCH = {"x86_64": 0xC000003E, "x86": 0x40000003, "x32": 0x4000003E,
             "aarch64": 0xC00000B7, "arm": 0x40000028}
SCMP_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
            "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _libseccomp() -> ctypes.CDLL:
    lib = ctypes.CDLL(_LIB)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def libseccomp_program(profile: dict) -> bytes:
    """The profile compiled by libseccomp as runc does it on x86_64: the native architecture
    with x86 and x32 added, each name resolved on the native one, rules added for all."""
    lib = _libseccomp()
    resolved = resolve(profile, DOCKER_DEFAULT_CAPABILITIES, arch="x86_64", kernel=KERNEL)
    assert resolved is not None
    ctx = lib.seccomp_init(resolved.default_action)
    try:
        for arch in ("x86", "x32"):
            assert lib.seccomp_arch_add(ctx, SCMP_ARCH[arch]) == 0
        for entry in applicable_entries(profile, DOCKER_DEFAULT_CAPABILITIES, "x86_64", KERNEL):
            action = resolve({"defaultAction": entry["action"],
                              "defaultErrnoRet": entry.get("errnoRet")}, (), arch="x86_64",
                             kernel=KERNEL).default_action
            if action == resolved.default_action:
                continue
            args = entry.get("args") or []
            cmps = (_ArgCmp * max(len(args), 1))(*[
                _ArgCmp(a["index"], SCMP_OPS[a["op"]], a["value"], a.get("valueTwo", 0))
                for a in args])
            for name in entry["names"]:
                number = lib.seccomp_syscall_resolve_name(name.encode())
                if number == -1:  # __NR_SCMP_ERROR: unknown everywhere
                    continue
                assert lib.seccomp_rule_add_array(ctx, action, number, len(args), cmps) == 0, name
        read_fd, write_fd = os.pipe()
        try:
            assert lib.seccomp_export_bpf(ctx, write_fd) == 0
        finally:
            os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            return pipe.read()
    finally:
        lib.seccomp_release(ctx)


PROBE_ARGS = [(), (0x40000,), (0x8,), (0xFFFFFFFF,), (40,), (2,), (0x10000000,),
              (0x01200011,), (0x1_00000000,), (0xFFFFFFFF_00000028,)]


@pytest.fixture(scope="module")
def libseccomp_default() -> bytes:
    return libseccomp_program(DEFAULT_PROFILE)


@needs_libseccomp
@pytest.mark.skipif(platform.machine() != "x86_64", reason="runc's way needs an x86_64 host")
@pytest.mark.parametrize("arch", ["x86_64", "x86", "x32"])
def test_same_decisions_as_libseccomp(arch, default_x86, libseccomp_default):
    """Every number of the architecture's table, with argument values that matter to the
    default profile: ours decides as libseccomp's filter does (but for ENOSYS above the
    profile's last call, which runc adds in front of libseccomp's filter)."""
    ours, theirs = default_x86, libseccomp_default
    resolved = resolve(DEFAULT_PROFILE, DOCKER_DEFAULT_CAPABILITIES, arch="x86_64",
                       kernel=KERNEL)
    highest = next(a.highest for a in resolved.arches if a.arch == arch)
    audit = bpf.AUDIT_ARCH[arch]
    base = X32_BIT if arch == "x32" else 0
    for number in range(base, base + 600):
        for args in PROBE_ARGS:
            mine = run_filter(ours, number, audit, args)
            if number > highest:
                assert mine == ENOSYS
                continue
            assert mine == run_filter(theirs, number, audit, args), (hex(number), args)
