"""v1 freezer: stop every task of a cgroup at once, so none can fork while being killed."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.native.cgroups.common import Controller, polling, read_value, write_value

FREEZE_TIMEOUT = 2.0


class Freezer(Controller):
    name = "freezer"

    def freeze(self, path: Path) -> bool:
        """Freeze and wait until the kernel reports FROZEN; False (and thawed) if it does not
        within FREEZE_TIMEOUT (a task stuck in the kernel can keep it FREEZING), and False
        when this hierarchy's leaf is gone (removed empty while a task was still joining the
        others: the caller kills without the freezer)."""
        try:
            for _ in polling(FREEZE_TIMEOUT):
                write_value(path / "freezer.state", "FROZEN")  # rewriting retries stuck tasks
                if read_value(path / "freezer.state") == "FROZEN":
                    return True
        except FileNotFoundError:
            return False
        self.thaw(path)
        return False

    def thaw(self, path: Path) -> None:
        try:
            write_value(path / "freezer.state", "THAWED")
        except FileNotFoundError:
            pass  # (the leaf is gone: nothing in it to thaw)

    def frozen(self, path: Path) -> bool:
        try:
            return read_value(path / "freezer.state") == "FROZEN"
        except OSError:
            return False
