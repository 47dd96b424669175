"""What a container may do beyond Docker's defaults, decided from its spec: the capability
mask (--cap-add, --cap-drop, --privileged), whether the seccomp filter applies, and the
device nodes it gets (--device, --privileged's host devices) with their cgroup rules.

Read from the spec as config.json keeps it (a dict), by `_plan`, `_limits` and exec.
"""

from __future__ import annotations

import functools
import os
import stat

from pytest_isobox.dockerargs import effective_capabilities
from pytest_isobox.engine import InvalidSpec
from pytest_isobox.engine.records import FrozenRecord, record
from pytest_isobox.native import capabilities, linux, seccomp

# moby/pkg/devices (HostDevices): what --privileged does not give from the host's /dev
_SKIPPED_DEV = ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev", "console")


@record
class DeviceNode(FrozenRecord):
    """A device node to make at `path` in the container: type and mode bits as stat gives
    them, the host's numbers, and the cgroup permissions (r, w, m)."""

    path: str
    host_path: str
    mode: int
    major: int
    minor: int
    permissions: str = "rwm"

    @property
    def rule(self) -> str:
        kind = "b" if stat.S_ISBLK(self.mode) else "c"
        return f"{kind} {self.major}:{self.minor} {self.permissions}"


def capability_mask(spec: dict) -> int:
    """The container root's capabilities as a mask, within what this kernel knows and this
    process may give (its bounding set: a sandbox may lack some, as a host's dockerd would)."""
    names = effective_capabilities(spec.get("cap_add") or (), spec.get("cap_drop") or (),
                                   bool(spec.get("privileged")))
    return capabilities.capability_mask(names) & grantable_mask()


def grantable_mask() -> int:
    """The capabilities this kernel knows and this process holds in its bounding set (read
    once per process: a bounding set only shrinks by the process's own prctl, which the
    engine's process never makes)."""
    return _grantable_mask(os.getpid())


@functools.cache
def _grantable_mask(_pid: int) -> int:
    known = (1 << (linux.last_cap() + 1)) - 1
    try:
        with open("/proc/self/status") as f:
            bounding = next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return known
    return known & bounding


def seccomp_filter(spec: dict) -> bytes | None:
    """The container's seccomp program: none for --privileged (as Docker), else the
    security options' (default profile, unconfined or a file)."""
    if spec.get("privileged"):
        return None
    return seccomp.filter_for(list(spec.get("security_opt") or ()))


def device_nodes(spec: dict) -> list[DeviceNode]:
    """--privileged's host devices, then the --device ones (which may rename a node)."""
    nodes = host_devices() if spec.get("privileged") else []
    for device in spec.get("devices") or ():
        nodes.append(_node(device["host_path"], device["container_path"],
                           device.get("permissions") or "rwm"))
    return nodes


def device_rules(spec: dict) -> tuple[str, ...]:
    """The devices cgroup rules the container needs beyond Docker's defaults."""
    if spec.get("privileged"):
        return ("a",)
    return tuple(node.rule for node in device_nodes(spec))


def check(spec: dict) -> None:
    """Refuse, before anything is made, an unknown capability or a --device that is not a
    device node here."""
    capability_mask(spec)
    device_nodes({"devices": spec.get("devices") or ()})


def host_devices() -> list[DeviceNode]:
    """The host's device nodes under /dev, as Docker gives a privileged container (its
    pts, shm, mqueue and the like excepted)."""
    nodes: list[DeviceNode] = []
    for top, dirs, files in os.walk("/dev"):
        if top == "/dev":
            dirs[:] = [d for d in dirs if d not in _SKIPPED_DEV]
        for name in files:
            path = os.path.join(top, name)
            if top == "/dev" and name in _SKIPPED_DEV:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                nodes.append(DeviceNode(path, path, stat.S_IFMT(st.st_mode)
                                        | stat.S_IMODE(st.st_mode), os.major(st.st_rdev),
                                        os.minor(st.st_rdev)))
    return nodes


def _node(host_path: str, container_path: str, permissions: str) -> DeviceNode:
    try:
        st = os.stat(host_path)
    except OSError as exc:
        raise InvalidSpec(f"error gathering device information while adding custom device "
                          f"{host_path!r}: {exc.strerror}") from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InvalidSpec(f"--device {host_path!r}: not a device node")
    return DeviceNode(container_path, host_path,
                      stat.S_IFMT(st.st_mode) | stat.S_IMODE(st.st_mode),
                      os.major(st.st_rdev), os.minor(st.st_rdev), permissions)
