"""What the rootful native engine needs of the host, checked at every open (the engine's and
the read-only reader's alike), with nothing imported but `os`."""

from __future__ import annotations

import os

from pytest_isobox.engine.errors import EngineUnavailable


def check_prerequisites() -> None:
    """Raise EngineUnavailable naming the first missing prerequisite of the rootful engine."""
    if os.geteuid() != 0:
        raise EngineUnavailable(
            f"the rootful native engine needs root (running as uid {os.geteuid()}); "
            "leave rootless mode on (the default for users) to run without root")
    try:
        with open("/proc/filesystems") as f:
            filesystems = f.read()
    except OSError:
        raise EngineUnavailable("/proc is not mounted: cannot check for overlayfs") from None
    if "overlay" not in filesystems.split():  # ("nodev\toverlay" lines)
        raise EngineUnavailable("overlayfs is not available (no 'overlay' in /proc/filesystems; "
                                "try `modprobe overlay`)")
    if not hasattr(os, "pidfd_open"):
        raise EngineUnavailable("this Python lacks os.pidfd_open (needs Linux 5.3+)")
