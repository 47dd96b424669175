"""The image store of a rootless engine: the same store, its file work done as root inside
the user namespace.

Layers must be unpacked where their owners exist: a tar's file owned by uid 65534 becomes, in
the namespace, a host file owned by the matching subordinate id, which the user (outside)
could neither create nor read nor remove. So every store operation that makes, reads or
deletes layer trees or a container's upper dir runs in a `UserNamespace.run` child;
lookups, tags and listings (plain files of the user's) stay in this process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_isobox.images.atomic import sweep_dead_temps
from pytest_isobox.images.store import ImageStore
from pytest_isobox.native.rootless.userns import UserNamespace

IN_NAMESPACE = frozenset({"layer_dirs", "import_rootfs", "commit", "remove", "prune", "load"})


class NamespacedImageStore:
    """An `ImageStore` whose tree-touching methods (IN_NAMESPACE) run in the user namespace."""

    def __init__(self, store: ImageStore, userns: UserNamespace) -> None:
        self.store = store
        self.userns = userns

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if name not in IN_NAMESPACE:
            return attr

        def in_namespace(*args: Any, **kwargs: Any) -> Any:
            call: Callable[[], Any] = functools.partial(attr, *args, **kwargs)
            return self.userns.run(call)

        return in_namespace


def open_store(home: Path, userns: UserNamespace) -> NamespacedImageStore:
    """The store of `home`; leftovers of dead producers (trees owned by mapped ids) are
    swept in the namespace first, so the store's own sweep finds nothing it cannot remove."""
    userns.run(sweep_dead_temps, Path(home) / "tmp")
    return NamespacedImageStore(ImageStore(home), userns)
