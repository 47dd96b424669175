"""v2 freezing and killing, built into every non-root cgroup: cgroup.freeze and cgroup.kill."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.native.cgroups.common import polling, read_keyed, write_value

FREEZE_TIMEOUT = 2.0


def can_kill(path: Path) -> bool:
    """cgroup.kill (Linux 5.14+) kills a whole cgroup at once, forks included."""
    return (path / "cgroup.kill").exists()


def kill(path: Path) -> None:
    write_value(path / "cgroup.kill", 1)


def freeze(path: Path) -> bool:
    """Freeze and wait until cgroup.events says frozen; False (and thawed) if it does not
    within FREEZE_TIMEOUT, or when this kernel has no cgroup.freeze (before 5.2)."""
    if not (path / "cgroup.freeze").exists():
        return False
    write_value(path / "cgroup.freeze", 1)
    for _ in polling(FREEZE_TIMEOUT):
        if read_keyed(path / "cgroup.events").get("frozen") == 1:
            return True
    thaw(path)
    return False


def thaw(path: Path) -> None:
    write_value(path / "cgroup.freeze", 0)


def frozen(path: Path) -> bool:
    try:
        return read_keyed(path / "cgroup.events").get("frozen") == 1
    except OSError:
        return False
