"""Docker's default seccomp profile (moby profiles/seccomp, as of Docker 26), in Docker's
profile format so that one loader reads it and the profiles users give with seccomp=FILE.

What it says: every call not listed fails with EPERM. The long list is allowed to everyone;
the entries with "includes"/"excludes" depend on the container's capabilities (a call a
capability guards is allowed only with it, as CAP_SYS_ADMIN guards mount or unshare), its
architecture or the kernel; three calls are allowed only for some argument values: socket (not
AF_VSOCK), personality (the five values programs use to query or set Linux personality) and,
without CAP_SYS_ADMIN, clone (no namespace flags). clone3 fails with ENOSYS instead of EPERM,
so that C libraries fall back to clone, whose flags a classic BPF filter can see.
"""

from __future__ import annotations

import errno

_ALLOWED = """
    accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
    chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
    clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
    copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
    epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
    exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
    fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
    flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
    ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
    getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
    getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
    getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage
    getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr
    inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy
    io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
    io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
    landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen
    listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
    map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
    mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
    mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget
    msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
    _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc
    pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
    process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink
    readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr
    rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
    rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
    rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
    sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
    sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
    semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
    setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
    setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
    setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
    setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask
    sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat
    sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
    timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
    timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate
    truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes
    vfork vmsplice wait4 waitid waitpid write writev
"""

_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
_AF_VSOCK = 40


def _allow(names: str, **conditions: object) -> dict[str, object]:
    return {"names": names.split(), "action": "SCMP_ACT_ALLOW", **conditions}


def _with_cap(names: str, cap: str) -> dict[str, object]:
    return _allow(names, includes={"caps": [f"CAP_{cap}"]})


def _on(names: str, *arches: str) -> dict[str, object]:
    return _allow(names, includes={"arches": list(arches)})


def _arg(index: int, op: str, value: int) -> dict[str, object]:
    return {"index": index, "value": value, "valueTwo": 0, "op": f"SCMP_CMP_{op}"}


DEFAULT_PROFILE: dict[str, object] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": errno.EPERM,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64",
         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": _ALLOWED.split(), "action": "SCMP_ACT_ALLOW"},
        _allow("process_vm_readv process_vm_writev ptrace", includes={"minKernel": "4.8"}),
        _allow("socket", args=[_arg(0, "NE", _AF_VSOCK)]),
        *(_allow("personality", args=[_arg(0, "EQ", value)])
          for value in (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)),
        _on("sync_file_range2 swapcontext", "ppc64le"),
        _on("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
            "arm", "arm64"),
        _on("arch_prctl", "amd64", "x32"),
        _on("modify_ldt", "amd64", "x32", "x86"),
        _on("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr", "s390", "s390x"),
        _on("riscv_flush_icache", "riscv64"),
        _with_cap("open_by_handle_at", "DAC_READ_SEARCH"),
        _with_cap("bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie "
                  "mount mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd "
                  "setdomainname sethostname setns syslog umount umount2 unshare", "SYS_ADMIN"),
        _allow("clone", args=[_arg(0, "MASKED_EQ", _NAMESPACE_FLAGS)],
               excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}),
        _allow("clone", args=[_arg(1, "MASKED_EQ", _NAMESPACE_FLAGS)],
               includes={"arches": ["s390", "s390x"]}, excludes={"caps": ["CAP_SYS_ADMIN"]}),
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        _with_cap("reboot", "SYS_BOOT"),
        _with_cap("chroot", "SYS_CHROOT"),
        _with_cap("delete_module init_module finit_module", "SYS_MODULE"),
        _with_cap("acct", "SYS_PACCT"),
        _with_cap("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
                  "SYS_PTRACE"),
        _with_cap("iopl ioperm", "SYS_RAWIO"),
        _with_cap("settimeofday stime clock_settime clock_settime64", "SYS_TIME"),
        _with_cap("vhangup", "SYS_TTY_CONFIG"),
        _with_cap("get_mempolicy mbind set_mempolicy set_mempolicy_home_node", "SYS_NICE"),
        _with_cap("syslog", "SYSLOG"),
        _with_cap("bpf", "BPF"),
        _with_cap("perf_event_open", "PERFMON"),
    ],
}
