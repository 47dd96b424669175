"""Where the native engine keeps its store when no home is given, decided in one place for
the engine, the plugin's settings and `isobox system check`."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def default_home() -> Path:
    """ISOBOX_HOME, else $XDG_CACHE_HOME/isobox, else ~/.cache/isobox."""
    from pathlib import Path

    return Path(default_home_dir())


def default_home_dir() -> str:
    """default_home() as text, for the read-only reader, which loads no pathlib."""
    if os.environ.get("ISOBOX_HOME"):
        return os.environ["ISOBOX_HOME"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "isobox")
