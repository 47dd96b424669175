"""A container's birth as one ordered list of steps, read top to bottom like runc's
standard_init_linux.go: namespaces, rootfs (every mount listed here), pivot_root, masked and
read-only paths, hostname, session, (the go-ahead once cgroup and network are set up), user,
working dir, rlimits, capability bounding set, no_new_privs, seccomp, ids, capabilities, exec.

Every decision about what a container gets is taken here, once. Two executors carry the steps
out and decide nothing: isobox-shim.c (spawned, no fork of the engine) and `planrunner`
(Python, for machines without a C compiler, terminals and execs). A new run
option is a new step or a new argument here, then one primitive in each executor.

A step is a tuple `(name, *args)`; arguments are str, int, bytes (seccomp: hex for the shim) or
a list of str (argv, env). `encode` gives the shim's wire form: NUL-terminated strings, a list
written as its length then its items.
"""

from __future__ import annotations

import os
import resource
from typing import TYPE_CHECKING

from pytest_isobox.native import linux, mounts
from pytest_isobox.native.linux import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
)
from pytest_isobox.native.rootless import mounts as rootless_mounts

if TYPE_CHECKING:
    from pytest_isobox.native.privileges import DeviceNode
    from pytest_isobox.native.runtime import ContainerPlan, ProcessPlan

Step = tuple

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOFILE_LIMIT = 1048576  # what Docker containers get from dockerd, capped by the host's hard limit
_SPECIAL = MS_NOSUID | MS_NODEV | MS_NOEXEC


def container_steps(plan: ContainerPlan, *, wait_network: bool, wait_cgroup: bool
                    ) -> list[Step]:
    """Everything from a fresh process to the container's exec.

    `wait_network`: tell "ready" once the namespaces exist and wait for "go" (the network is
    attached meanwhile). `wait_cgroup`: the process is not yet in its cgroup, so wait for "go"
    before anything the cgroup must account, and before a cgroup namespace is made.
    """
    steps: list[Step] = [("unshare", plan.unshare_flags)]
    if wait_network:
        steps.append(("ready",))
    waited = False
    if plan.cgroup_ns:  # a cgroup namespace must be rooted in our own cgroup
        if wait_cgroup:
            steps.append(("go",))
            waited = True
        steps.append(("unshare", linux.CLONE_NEWCGROUP))
    if plan.loopback_up:
        steps.append(("lo",))
    steps += rootfs_steps(plan)
    steps.append(("pivot",))
    if plan.sysctls:  # in the namespaces, once the network is attached, before /proc/sys is ro
        if (wait_network or wait_cgroup) and not waited:
            steps.append(("go",))
            waited = True
        steps += [("sysctl", key, value) for key, value in plan.sysctls.items()]
    if not plan.privileged:  # Docker gives a privileged container the kernel's files as they are
        steps += [("mask", path) for path in mounts.MASKED_PATHS]
        steps += [("readonly", path) for path in mounts.READONLY_PATHS]
    steps += [("hostname", plan.hostname), ("setsid",)]
    if (wait_network or wait_cgroup) and not waited:
        steps.append(("go",))
    steps += process_steps(plan.process, plan.hostname, plan.seccomp, plan.no_new_privs,
                           setgroups=plan.setgroups)
    return steps


def rootfs_steps(plan: ContainerPlan) -> list[Step]:
    """The overlay, Docker's default mounts, the user's mounts and the /etc files, all below
    the new root (paths in it are resolved symlink-safe by the executor)."""
    steps = overlay_steps(plan)
    steps.append(("root", plan.rootfs))
    steps += default_mount_steps(plan.new_netns, rootless=plan.rootless,
                                 tty_gid=plan.tty_gid_mapped,
                                 shm_size=plan.shm_size, writable_sys=plan.privileged)
    steps += extra_device_steps(plan.devices, rootless=plan.rootless)
    for m in plan.mounts:
        steps += user_mount_steps(m)
    for target, source in plan.etc_files.items():
        steps.append(_mountin(source, target, False, "", MS_BIND))
    if plan.init_binary:
        steps.append(_mountin(plan.init_binary, mounts.INIT_PATH, False, "", MS_BIND))
        steps.append(("remountin", mounts.INIT_PATH,
                      MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV))
    if plan.read_only:  # the root itself, after everything mounted on it (as runc does)
        steps.append(("remountin", "/", MS_BIND | MS_REMOUNT | MS_RDONLY))
    return steps


def overlay_steps(plan: ContainerPlan) -> list[Step]:
    """Mounts private, then the image layers (read-only) with the container's writable upper
    dir at `plan.rootfs`. Lower dirs that share one parent are given relative to it (the
    kernel resolves them against the working directory), so many fit the one-page data."""
    steps: list[Step] = [("private",)]
    lowerdirs = list(plan.lowerdirs)
    parents = {os.path.dirname(d) for d in lowerdirs}
    if len(parents) == 1 and len(lowerdirs) > 1:
        steps.append(("chdir", parents.pop()))
        lowerdirs = [os.path.basename(d) for d in lowerdirs]
    data = mounts.overlay_options(lowerdirs, plan.upper, plan.work, userxattr=plan.rootless)
    steps.append(("mount", "overlay", plan.rootfs, "overlay", 0, data))
    return steps


def default_mount_steps(new_netns: bool, *, rootless: bool, tty_gid: bool = True,
                        shm_size: int = mounts.SHM_SIZE, writable_sys: bool = False
                        ) -> list[Step]:
    """Docker's default mounts: /proc, /dev (tmpfs, nodes, links), /dev/pts (of group tty
    when `tty_gid`: the user namespace maps it), /dev/shm (`shm_size` bytes), /dev/mqueue,
    /sys read-only (writable for a privileged container). Rootless: the host's device nodes
    bound, not made."""
    steps: list[Step] = [
        _mountin("proc", "/proc", True, "proc", _SPECIAL),
        _mountin("tmpfs", "/dev", True, "tmpfs", MS_NOSUID | MS_STRICTATIME,
                 "mode=755,size=65536k"),
    ]
    steps += device_steps(rootless=rootless)
    steps += [
        _mountin("devpts", "/dev/pts", True, "devpts", MS_NOSUID | MS_NOEXEC,
                 rootless_mounts.devpts_options(tty_gid)),
        _mountin("shm", "/dev/shm", True, "tmpfs", _SPECIAL,
                 f"mode=1777,size={shm_size}"),
        _mountin("mqueue", "/dev/mqueue", True, "mqueue", _SPECIAL),
    ]
    sys_flags = (0 if writable_sys else MS_RDONLY) | _SPECIAL
    if new_netns:
        steps.append(_mountin("sysfs", "/sys", True, "sysfs", sys_flags))
    else:  # sysfs of the host's network namespace: bind it read-only, as runc does
        steps.append(_mountin("/sys", "/sys", True, "", MS_BIND | MS_REC))
        steps.append(("remountin", "/sys", MS_BIND | MS_REMOUNT | sys_flags))
    return steps


def device_steps(*, rootless: bool) -> list[Step]:
    """Docker's device nodes and links in the root's /dev. In a user namespace mknod is
    refused: the host's nodes are bound onto empty files (a bind keeps the host mount's
    device access, which a tmpfs made in a user namespace would deny)."""
    steps: list[Step] = []
    for name, (major, minor) in mounts.DEVICES.items():
        if rootless:
            steps.append(_mountin(f"/dev/{name}", f"/dev/{name}", False, "", MS_BIND))
        else:
            steps.append(("mknodin", f"/dev/{name}", 0o666, major, minor))
    steps += [("symlinkin", target, f"/dev/{name}") for name, target in
              mounts.DEV_SYMLINKS.items()]
    return steps


def extra_device_steps(nodes: list[DeviceNode], *, rootless: bool) -> list[Step]:
    """Device nodes beyond Docker's defaults (--device, --privileged): made where /dev holds
    them directly; bound from the host in a user namespace or below a subdirectory (the
    mount point's parents are made, the bind keeps the host node's type and numbers)."""
    made = {f"/dev/{name}" for name in (*mounts.DEVICES, *mounts.DEV_SYMLINKS)}
    steps: list[Step] = []
    for node in nodes:
        if node.path in made:
            continue
        made.add(node.path)
        if rootless or os.path.dirname(node.path) != "/dev":
            steps.append(_mountin(node.host_path, node.path, False, "", MS_BIND))
        else:
            steps.append(("mknodin", node.path, node.mode, node.major, node.minor))
    return steps


def user_mount_steps(mount: mounts.ResolvedMount) -> list[Step]:
    """A bind mount, named volume (a bind of its _data dir) or tmpfs the user asked for."""
    if mount.kind == "tmpfs":
        data = "mode=1777" + (f",size={mount.size}" if mount.size else "")
        flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if mount.read_only else 0)
        return [_mountin("tmpfs", mount.target, True, "tmpfs", flags, data)]
    steps = [_mountin(mount.source, mount.target, os.path.isdir(mount.source), "",
                      MS_BIND | MS_REC)]
    if mount.read_only:
        steps.append(("remountin", mount.target, MS_BIND | MS_REMOUNT | MS_RDONLY))
    return steps


def process_steps(process: ProcessPlan, hostname: str, seccomp_filter: bytes | None,
                  no_new_privs: bool, *, setgroups: bool) -> list[Step]:
    """As whom and how the command runs: user (from the container's /etc/passwd), working
    dir, rlimits, bounding set, no_new_privs, seccomp (while still root: without
    no_new_privs a filter needs CAP_SYS_ADMIN), ids, capabilities, exec. `setgroups` is
    False in a single-id user namespace, where setgroups(2) is denied for good."""
    steps: list[Step] = [("user", process.user),
                         ("workdir", process.workdir, 1 if process.create_workdir else 0),
                         ("nofile", NOFILE_LIMIT)]
    for name, (soft, hard) in process.rlimits.items():
        steps.append(("rlimit", getattr(resource, f"RLIMIT_{name.upper()}"), soft, hard))
    steps.append(("bounding", process.capabilities, linux.last_cap()))
    if no_new_privs:
        steps.append(("nonewprivs",))
    if seccomp_filter is not None:
        steps.append(("seccomp", seccomp_filter))
    steps += [("identity", 1 if setgroups else 0), ("caps", process.capabilities)]
    steps.append(("exec", list(process.argv), environment_list(process, hostname)))
    return steps


def environment_list(process: ProcessPlan, hostname: str) -> list[str]:
    """Docker's process environment: PATH and HOSTNAME always, TERM for ttys, then the
    container's own; HOME is added at exec from the resolved user's passwd entry."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if process.tty:
        env["TERM"] = "xterm"
    env.update(process.env)
    return [f"{k}={v}" for k, v in env.items()]


def _mountin(source: str, path: str, is_dir: bool, fstype: str, flags: int, data: str = ""
             ) -> Step:
    """Mount at `path` inside the root (its mount point made: a dir, or an empty file)."""
    return ("mountin", source, path, 1 if is_dir else 0, fstype, flags, data)


def encode(steps: list[Step]) -> list[str]:
    """The shim's wire form of `steps`, ending in "end"; a NUL byte anywhere is refused."""
    out: list[str] = []
    for step in steps:
        for arg in step:
            if isinstance(arg, list):
                out.append(str(len(arg)))
                out.extend(arg)
            elif isinstance(arg, bytes):
                out.append(arg.hex())
            else:
                out.append(str(arg))
    out.append("end")
    for field in out:
        if "\0" in field:
            raise ValueError(f"a NUL byte in the container's plan: {field[:40]!r}")
    return out
