"""Resolved seccomp rules compiled to a classic BPF program (struct sock_filter[], native endian).

The program runs on every system call the container makes, so it is a search tree, not a list:
after the architecture check, the call number is compared with the boundaries of the runs of
numbers that share one outcome (allowed, denied, or checked further on the arguments), a
handful of comparisons for some 450 numbers. Its shape follows libseccomp's: an architecture
other than the filter's kills the thread; on x86_64 the x32 bit (0x40000000) selects the x32
rules, so an x32 call never reaches the x86_64 ones; 64-bit arguments are compared word by word.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.native.seccomp.profile import (
    RET_ERRNO,
    RET_KILL_THREAD,
    ArchRules,
    Condition,
    Resolved,
    Rule,
)
from pytest_isobox.native.seccomp.syscalls import X32_SYSCALL_BIT

AUDIT_ARCH = {"x86_64": 0xC000003E, "x32": 0xC000003E, "x86": 0x40000003,
              "aarch64": 0xC00000B7, "arm": 0x40000028}
_ARGS_64 = {"x86_64", "aarch64"}  # x32 arguments are compared as 32-bit, as libseccomp does
MAX_INSNS = 4096  # BPF_MAXINSNS
ENOSYS = 38

# classic BPF opcodes
LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
JA = 0x05
JEQ, JGT, JGE, JSET = 0x15, 0x25, 0x35, 0x45  # BPF_JMP | op | BPF_K
RET_K = 0x06

OFF_NR, OFF_ARCH, OFF_ARGS = 0, 4, 16  # struct seccomp_data


class Label:
    """A place in the program, fixed when it is assembled."""


@dataclass
class Insn:
    code: int
    k: int = 0
    jt: Label | None = None  # conditional jumps name both targets; JA uses jt
    jf: Label | None = None


@dataclass
class Program:
    items: list[Insn | Label] = field(default_factory=list)

    def ld(self, offset: int) -> None:
        self.items.append(Insn(LD_ABS, offset))

    def ret(self, action: int) -> None:
        self.items.append(Insn(RET_K, action))

    def jump(self, op: int, k: int, jt: Label, jf: Label) -> None:
        self.items.append(Insn(op, k & 0xFFFFFFFF, jt, jf))

    def mark(self, label: Label | None = None) -> Label:
        label = label or Label()
        self.items.append(label)
        return label


def compile_filter(resolved: Resolved) -> bytes:
    """The program as the bytes prctl(PR_SET_SECCOMP) takes; InvalidSpec if it is too long."""
    prog = Program()
    by_arch = {a.arch: a for a in resolved.arches}
    audit_arches = list(dict.fromkeys(AUDIT_ARCH[a.arch] for a in resolved.arches))
    sections = {audit: Label() for audit in audit_arches}
    prog.ld(OFF_ARCH)
    for audit in audit_arches:
        prog.jump(JEQ, audit, sections[audit], nxt := Label())
        prog.mark(nxt)
    prog.ret(RET_KILL_THREAD)
    for audit in audit_arches:
        prog.mark(sections[audit])
        prog.ld(OFF_NR)
        if audit == AUDIT_ARCH["x86_64"]:
            _x86_64_section(prog, by_arch.get("x86_64"), by_arch.get("x32"),
                            resolved.default_action)
        else:
            arch = next(a for a in resolved.arches if AUDIT_ARCH[a.arch] == audit)
            _arch_body(prog, arch, resolved.default_action, low=0)
    raw = assemble(prog.items)
    if len(raw) > MAX_INSNS:
        raise InvalidSpec(f"seccomp profile compiles to {len(raw)} BPF instructions, more than "
                          f"the kernel's {MAX_INSNS}")
    return b"".join(struct.pack("=HBBI", *insn) for insn in raw)


def _x86_64_section(prog: Program, x86_64: ArchRules | None, x32: ArchRules | None,
                    default: int) -> None:
    """x86_64 and x32 share one AUDIT_ARCH; the x32 bit of the number tells them apart."""
    is_x32, not_x32 = Label(), Label()
    prog.jump(JSET, X32_SYSCALL_BIT, is_x32, not_x32)
    for arch, label, low in ((x86_64, not_x32, 0), (x32, is_x32, X32_SYSCALL_BIT)):
        prog.mark(label)
        if arch is None:
            prog.ret(RET_KILL_THREAD)
        else:
            _arch_body(prog, arch, default, low)


def _arch_body(prog: Program, arch: ArchRules, default: int, low: int) -> None:
    """With the call number in A: the ENOSYS stub, then the search tree."""
    high = 0xFFFFFFFF
    if arch.highest is not None:
        high = arch.highest
        enosys, known = Label(), Label()
        prog.jump(JGT, high, enosys, known)
        prog.mark(enosys)
        prog.ret(RET_ERRNO | ENOSYS)
        prog.mark(known)
    _tree(prog, _segments(arch, default, low, high), default, arch.arch in _ARGS_64)


Decision = tuple[Rule, ...]  # the rules checked in order, the default after them


def _segments(arch: ArchRules, default: int, low: int, high: int) -> list[tuple[int, Decision]]:
    """[low, high] cut into runs of numbers with one decision: (first number, decision)."""
    points: list[tuple[int, Decision]] = []
    cursor = low
    for number in sorted(n for n in arch.rules if low <= n <= high):
        if number > cursor:
            points.append((cursor, ()))
        points.append((number, _decision(arch.rules[number], default)))
        cursor = number + 1
    if cursor <= high:
        points.append((cursor, ()))
    merged: list[tuple[int, Decision]] = []
    for start, decision in points:
        if not merged or merged[-1][1] != decision:
            merged.append((start, decision))
    return merged


def _decision(rules: list[Rule], default: int) -> Decision:
    """Rules up to the first unconditional one (what follows it can never be reached);
    a lone unconditional rule with the default action is the default."""
    kept: list[Rule] = []
    for rule in rules:
        kept.append(rule)
        if not rule.conditions:
            break
    if len(kept) == 1 and not kept[0].conditions and kept[0].action == default:
        return ()
    return tuple(kept)


def _tree(prog: Program, segments: list[tuple[int, Decision]], default: int,
          args64: bool) -> None:
    if len(segments) == 1:
        _leaf(prog, segments[0][1], default, args64)
        return
    mid = len(segments) // 2
    left, right = Label(), Label()
    prog.jump(JGE, segments[mid][0], right, left)
    prog.mark(left)
    _tree(prog, segments[:mid], default, args64)
    prog.mark(right)
    _tree(prog, segments[mid:], default, args64)


def _leaf(prog: Program, decision: Decision, default: int, args64: bool) -> None:
    for rule in decision:
        if not rule.conditions:
            prog.ret(rule.action)
            return
        next_rule = Label()
        for cond in rule.conditions:
            _condition(prog, cond, args64, holds := Label(), next_rule)
            prog.mark(holds)
        prog.ret(rule.action)
        prog.mark(next_rule)
    prog.ret(default)


def _condition(prog: Program, cond: Condition, args64: bool, ok: Label, fail: Label) -> None:
    """Jump to `ok` if the argument satisfies `cond`, else to `fail`."""
    low_off = OFF_ARGS + 8 * cond.index + (0 if sys.byteorder == "little" else 4)
    high_off = OFF_ARGS + 8 * cond.index + (4 if sys.byteorder == "little" else 0)
    value, value_two = cond.value, cond.value_two
    if cond.op == "MASKED_EQ":
        if args64 and (value >> 32 or value_two >> 32):
            then = Label()
            _masked(prog, high_off, value >> 32, value_two >> 32, then, fail)
            prog.mark(then)
        _masked(prog, low_off, value & 0xFFFFFFFF, value_two & 0xFFFFFFFF, ok, fail)
        return
    low = value & 0xFFFFFFFF
    if args64:
        _high_word(prog, cond.op, value >> 32, high_off, ok, fail, then := Label())
        prog.mark(then)
    prog.ld(low_off)
    op, jt, jf = {"EQ": (JEQ, ok, fail), "NE": (JEQ, fail, ok), "GT": (JGT, ok, fail),
                  "GE": (JGE, ok, fail), "LT": (JGE, fail, ok), "LE": (JGT, fail, ok)}[cond.op]
    prog.jump(op, low, jt, jf)


def _masked(prog: Program, offset: int, mask: int, datum: int, ok: Label, fail: Label) -> None:
    prog.ld(offset)
    prog.items.append(Insn(AND_K, mask))
    prog.jump(JEQ, datum, ok, fail)


def _high_word(prog: Program, op: str, high: int, offset: int, ok: Label, fail: Label,
               then: Label) -> None:
    """The upper words decide unless they are equal; if equal go on to `then` (lower words)."""
    prog.ld(offset)
    if op in ("EQ", "NE"):
        prog.jump(JEQ, high, then, fail if op == "EQ" else ok)
        return
    above, below = (ok, fail) if op in ("GT", "GE") else (fail, ok)
    not_above = Label()
    prog.jump(JGT, high, above, not_above)
    prog.mark(not_above)
    prog.jump(JEQ, high, then, below)


def assemble(items: list[Insn | Label]) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) with relative offsets; a conditional target farther than 255 gets an
    unconditional jump (32-bit offset) placed right after the instruction."""
    items = list(items)
    while True:
        where, count = {}, 0
        for item in items:
            if isinstance(item, Label):
                where[item] = count
            else:
                count += 1
        position, far = 0, None
        for index, item in enumerate(items):
            if isinstance(item, Label):
                continue
            position += 1
            if item.code != JA and item.jt is not None:
                for target in (item.jt, item.jf):
                    if where[target] - position > 255:
                        far = (index, item, target)
                        break
            if far:
                break
        if far is None:
            break
        index, insn, target = far
        trampoline = Label()
        if insn.jt is target:
            insn.jt = trampoline
        else:
            insn.jf = trampoline
        items[index + 1:index + 1] = [trampoline, Insn(JA, 0, target)]
    out = []
    position = 0
    for item in items:
        if isinstance(item, Label):
            continue
        position += 1
        if item.code == JA:
            out.append((JA, 0, 0, where[item.jt] - position))
        elif item.jt is not None:
            out.append((item.code, where[item.jt] - position, where[item.jf] - position, item.k))
        else:
            out.append((item.code, 0, 0, item.k))
    return out
