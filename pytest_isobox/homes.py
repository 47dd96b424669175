"""Where the native engine keeps its store when no home is given, decided in one place for
the engine, the plugin's settings and `isobox system check`."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """ISOBOX_HOME, else $XDG_CACHE_HOME/isobox, else ~/.cache/isobox."""
    if os.environ.get("ISOBOX_HOME"):
        return Path(os.environ["ISOBOX_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "isobox"
