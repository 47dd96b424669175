"""Linux system calls that Python 3.11's `os` lacks, through ctypes.

Each wrapper raises OSError with errno and a message naming the call and its argument, so a
failing container start says which step failed and why.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import socket
import struct

from pytest_isobox import names

# The C library this interpreter is linked with, its symbols looked up in the process's own
# namespace: ctypes.util.find_library("c") would run `ldconfig -p` (a fork and an exec, and
# subprocess and tempfile imported) in every process that starts a container.
_libc = ctypes.CDLL(None, use_errno=True)

# clone / unshare / setns flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# prctl options
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_CHILD_SUBREAPER = 36

_SYS_PIVOT_ROOT = 155  # x86_64
_SYS_CAPGET = 125
_SYS_CAPSET = 126

# inotify
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

# terminal and interface ioctls
TIOCSCTTY = 0x540E
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _b(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), f"setns({fd}, {nstype:#x})")


def mount(source: str | bytes | None, target: str | bytes, fstype: str | bytes | None,
          flags: int = 0, data: str | bytes | None = None) -> None:
    result = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(result, f"mount {source!s} on {target!s} ({fstype!s}, {data!s})")


def umount(target: str | bytes, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target!s}")


def pivot_root(new_root: str, put_old: str) -> None:
    result = _libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old))
    _check(result, f"pivot_root({new_root}, {put_old})")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname({name!r})")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


PROCESS_NAME_PREFIX = names.PROCESS_PREFIX


def set_process_name(name: str) -> None:
    """This process's name in /proc/PID/comm (15 bytes at most): how `isobox system check`
    tells our monitors, relays and holders from everything else on the host."""
    buffer = ctypes.create_string_buffer(name.encode()[:15])
    prctl(PR_SET_NAME, ctypes.addressof(buffer))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    result = _libc.syscall(_SYS_CAPSET, ctypes.byref(header), ctypes.byref(data))
    _check(result, "capset")


@functools.cache
def last_cap() -> int:
    """The highest capability number this kernel knows (read once: it never changes)."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def inotify_init(flags: int = IN_NONBLOCK | IN_CLOEXEC) -> int:
    """A new inotify descriptor (non-blocking, close-on-exec by default)."""
    return _check(_libc.inotify_init1(flags), "inotify_init1")


def inotify_add_watch(fd: int, path: str, mask: int) -> int:
    return _check(_libc.inotify_add_watch(fd, _b(path), mask), f"inotify_add_watch({path})")


def inotify_close(fd: int, watch: int) -> None:
    """Close an inotify descriptor, its watch removed first: closed with a watch on, the
    close waits for the kernel to free the watch (an RCU grace period, 8-16 ms here: as long
    as the rest of `isobox run --rm IMAGE true` after the container's exit); removed first,
    the kernel frees it later, the close takes microseconds."""
    _libc.inotify_rm_watch(fd, watch)  # (a watch already gone, its file deleted: EINVAL)
    os.close(fd)


def interface_up(name: str = "lo") -> None:
    """Set IFF_UP on an interface of the calling thread's network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sH14x", name.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags | IFF_UP))
