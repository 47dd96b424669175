"""`EngineFront`: stands for NativeEngine in a process that may need little of it (the
read-only verbs' reader, a cached build's front): it answers what it can from the engine's
files and opens the engine itself, once and with the options it was given, for the rest."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Self


_LIMIT_MODES = ("strict", "best-effort")


class EngineFront:
    """Every attribute it lacks is the engine's (opened on that first need)."""

    name = "native"
    _engine: Any = None
    _options: dict[str, Any]
    _own: tuple[str, ...] = ("_options",)  # set in __init__: never asked of the engine

    def _open_files(self, home: str | os.PathLike | None, rootless: bool | None, limits: str,
                    pull: str | None, policies: tuple[str, ...]) -> bool:
        """Whether this front answers from `home`'s files: rootful, a limits mode the engine
        takes and a pull policy among `policies`. Then `home` is set and checked as the
        engine's open checks it (prerequisites, owner: refused alike); else nothing is done
        and the caller opens the engine, whose errors are then the ones given."""
        if (limits not in _LIMIT_MODES
                or not (rootless is False or (rootless is None and os.geteuid() == 0))
                or (pull or os.environ.get("ISOBOX_PULL") or "missing") not in policies):
            return False
        from pytest_isobox.homes import default_home_dir
        from pytest_isobox.native.prerequisites import check_prerequisites
        from pytest_isobox.native.rootless.store import check_owner

        self.home = os.fspath(home) if home else default_home_dir()
        check_prerequisites()
        check_owner(self.home)
        return True

    def _open(self) -> Any:
        from pytest_isobox.native.engine import NativeEngine

        return NativeEngine(**self._options)

    def _full(self) -> Any:
        """The engine itself, opened once."""
        if self._engine is None:
            self._engine = self._open()
        return self._engine

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in self._own:
            raise AttributeError(name)
        return getattr(self._full(), name)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
