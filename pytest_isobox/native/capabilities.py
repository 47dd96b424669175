"""Docker's default capability set, and cutting a process down to it before exec.

Guarantee: after `restrict_to_default`, the bounding set holds only Docker's defaults, ambient
and inheritable are empty (as Docker does since the fix for CVE-2022-24769), and a root
process keeps the defaults in its effective and permitted sets; a process that changed to a
non-zero uid has none (the kernel clears them on setuid, and exec keeps them clear).
"""

from __future__ import annotations

from pytest_isobox.native import linux

CAPABILITY_NUMBERS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
    "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
    "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
    "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
    "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
    "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

# moby/oci/caps/defaults.go
DOCKER_DEFAULT_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


def capability_mask(names: tuple[str, ...] | list[str]) -> int:
    """The 64-bit mask of capability names (without the CAP_ prefix)."""
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITY_NUMBERS[name.upper().removeprefix("CAP_")]
    return mask


DOCKER_DEFAULT_MASK = capability_mask(DOCKER_DEFAULT_CAPABILITIES)  # 0xa80425fb


def drop_bounding_set(keep: int = DOCKER_DEFAULT_MASK, last_cap: int | None = None) -> None:
    """Remove every capability outside `keep` from the bounding set (needs CAP_SETPCAP)."""
    for cap in range((linux.last_cap() if last_cap is None else last_cap) + 1):
        if not keep & (1 << cap):
            linux.prctl(linux.PR_CAPBSET_DROP, cap)
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)


def set_process_capabilities(uid: int, keep: int = DOCKER_DEFAULT_MASK) -> None:
    """Effective and permitted = `keep` for root, nothing for other users; inheritable empty."""
    allowed = keep if uid == 0 else 0
    linux.capset(allowed, allowed, 0)
