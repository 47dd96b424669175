"""When images are pulled: Docker's `--pull=missing|always|never`, and ISOBOX_OFFLINE=1.

- missing (default): an image not in the store is pulled.
- always: pulled once per engine (per process), so a session sees the registry's current
  image and does not ask again for every container.
- never, or ISOBOX_OFFLINE=1: the store only; nothing touches the network.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from pytest_isobox.engine import ImageNotFound, InvalidSpec
from pytest_isobox.images.reference import is_id_prefix, parse_reference

POLICIES = ("missing", "always", "never")
Progress = Callable[[str, str, int, int], None]


def check_policy(value: str) -> str:
    if value not in POLICIES:
        raise InvalidSpec(f"invalid pull policy {value!r}: expected missing, always or never")
    return value


class PullPolicy:
    """The policy of one engine, with what it pulled already (for "always")."""

    def __init__(self, value: str | None = None) -> None:
        self.value = check_policy(value or os.environ.get("ISOBOX_PULL") or "missing")
        self.progress: Progress | None = None  # given to pulls made on demand
        self.on_pull: Callable[[str, str, float], None] | None = None  # (ref, id, seconds)
        self._pulled: set[str] = set()
        self._lock = threading.Lock()

    def pulled(self, ref: str) -> None:
        with self._lock:
            self._pulled.add(ref)

    def due(self, ref: str) -> bool:
        """Whether "always" wants `ref` pulled now (not yet pulled by this engine)."""
        if self.value != "always" or _offline() or ref.startswith("/") or not _pullable(ref):
            return False
        with self._lock:
            return ref not in self._pulled

    def ensure(self, ref: str, store: Any, pull: Callable[[str], str]) -> str:
        """`ref` itself when the store can use it as is, else the id of the image pulled."""
        if ref.startswith("/"):
            return ref
        pullable = _pullable(ref)
        if pullable and self.due(ref):
            return self._pull(ref, pull)
        try:
            return store.find(ref)[0]
        except ImageNotFound:
            if not pullable:
                raise
            if _offline():
                raise ImageNotFound(f"No such image: {ref} (ISOBOX_OFFLINE=1: not pulling it "
                                    "from its registry)") from None
            if self.value == "never":
                raise ImageNotFound(f"No such image: {ref} (pull policy never: not pulling "
                                    "it)") from None
        return self._pull(ref, pull)

    def _pull(self, ref: str, pull: Callable[[str], str]) -> str:
        import time

        started = time.monotonic()
        image_id = pull(ref)
        if self.on_pull:
            self.on_pull(ref, image_id, time.monotonic() - started)
        return image_id


def _pullable(ref: str) -> bool:
    """A name a registry could serve (not an image id or id prefix)."""
    if ref.startswith("sha256:") or (is_id_prefix(ref) and len(ref) >= 12):
        return False
    try:
        parse_reference(ref)
    except InvalidSpec:
        return False
    return True


def _offline() -> bool:
    from pytest_isobox.images.registry.settings import offline  # ssl: only when pulling

    return offline()
