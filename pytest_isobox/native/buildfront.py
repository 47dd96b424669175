"""`NativeBuildFront`: what `open_engine("native", cached_build=True)` gives, the engine of
`isobox build`.

A fully cached build makes nothing (every step's image is in the build cache, the tag already
names the result), yet opening NativeEngine sweeps dead owners' leftovers, builds the image
store and loads the start and network code: several times what docker's whole cached
`build -q` takes. The front first runs the builder in cached-only mode (the same steps and
the same keys as a full build, builder.Builder(cached_only=True)) over the store's files
(images/storereader.py). At the first thing it is not sure of (a step not cached, a pull due, a tag
to set or move, --label, --no-cache, --pull, rootless mode, an odd option) it opens the whole
engine, which builds as ever; every other verb goes to that engine too. What the light path
reports (the steps, the id) is reported only once it has succeeded, so a fallback repeats
nothing.
"""

from __future__ import annotations

import os

from pytest_isobox.builder.cache import NotCached
from pytest_isobox.native.front import EngineFront

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from pytest_isobox.engine import BuildStep, ImageInfo
    from pytest_isobox.images.storereader import StoreReader

_QUIET_POLICIES = ("missing", "never")  # ("always" pulls: the engine's PullPolicy decides)
_MAKING_OPTIONS = ("no_cache", "labels", "pull")  # a build with one of these makes an image
_ENGINE_OPTIONS = ("pull", "on_output", "on_note")  # the engine's build takes them, not Builder


class _PolicyHolder:
    """Stands for the engine's pull policy until the engine is open (the CLI gives it a
    progress printer on a terminal)."""

    progress = None


class NativeBuildFront(EngineFront):
    """A cached `build` from the store's files; the native engine for anything else."""

    _own = ("_options", "_policy", "_light", "_peek")

    def __init__(self, home: str | os.PathLike | None = None, *, rootless: bool | None = None,
                 limits: str = "strict", pull: str | None = None, **options: object) -> None:
        self._options: dict[str, Any] = {"home": home, "rootless": rootless, "limits": limits,
                                         "pull": pull, **options}
        self._policy = _PolicyHolder()
        self._peek: StoreReader | None = None
        self._light = (not options.get("read_only")
                       and self._open_files(home, rootless, limits, pull, _QUIET_POLICIES))
        if not self._light:  # rootless mode, a pull policy to apply or check: the engine
            self._full()

    def _open(self) -> Any:
        """The engine, with the CLI's progress printer if it gave one."""
        engine = super()._open()
        if self._policy.progress is not None:
            engine.pull_policy.progress = self._policy.progress
        return engine

    @property
    def pull_policy(self) -> Any:
        return self._policy if self._engine is None else self._engine.pull_policy

    def _store(self) -> StoreReader:
        if self._peek is None:
            from pytest_isobox.images.storereader import StoreReader

            self._peek = StoreReader(self.home)
        return self._peek

    # ------------------------------------------------------------ the two verbs it answers
    def build(self, context: str | Path, *,
              on_step: Callable[[BuildStep], None] | None = None, **options: Any) -> str:
        """images.ImagesRole.build's: from the cache alone when every step is cached (the
        engine's pull, on_output and on_note matter only to a build that makes something)."""
        if self._engine is None and not any(options.get(o) for o in _MAKING_OPTIONS):
            from pytest_isobox.builder.builder import Builder

            steps: list[BuildStep] = []
            builder = Builder(_CachedImages(self._store()), os.path.join(self.home, "buildcache"),
                              cached_only=True)
            given = {k: v for k, v in options.items() if k not in _ENGINE_OPTIONS}
            try:
                image_id = builder.build(context, on_step=on_step and steps.append, **given)
            except NotCached:
                pass
            else:
                if on_step is not None:
                    for step in steps:
                        on_step(step)
                return image_id
        return self._full().build(context, on_step=on_step, **options)

    def tag(self, ref: str, new_ref: str) -> None:
        """As images.ImagesRole.tag: a tag already on the image is left as it is."""
        if self._engine is None:
            try:
                _CachedImages(self._store()).tag(ref, new_ref)
                return
            except NotCached:
                pass
        self._full().tag(ref, new_ref)


class _CachedImages:
    """What a cached-only Builder asks of its engine, answered from the store's files:
    NotCached for anything it cannot answer so (and for every verb that makes something)."""

    def __init__(self, store: StoreReader) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotCached(f"{name}: the engine makes it")

    def ensure_image(self, ref: str) -> str:
        """PullPolicy.ensure for "missing" and "never": an image the store has is used."""
        from pytest_isobox.images.storereader import Unsure

        try:
            return self._store.find(ref)
        except Unsure:
            raise NotCached(f"{ref}: not in the store") from None  # to pull, or its error

    def image_inspect(self, ref: str) -> ImageInfo:
        """The image's id and config (all a build reads of it; tags and size left empty)."""
        from pytest_isobox.engine.records import ImageInfo
        from pytest_isobox.images.storereader import Unsure

        try:
            image_id = self._store.find(ref)
            config = self._store.config(image_id)
        except Unsure:
            raise NotCached(f"{ref}: not read from the store's files") from None
        return ImageInfo(image_id, [], config, 0, config.get("created"))

    def tag(self, ref: str, new_ref: str) -> None:
        """Nothing to do when `new_ref` already names `ref`'s image; NotCached otherwise."""
        from pytest_isobox.images.storereader import Unsure

        try:
            tag = self._store.stored_tag(new_ref)  # (the tag as given, a stored one)
        except Unsure:
            from pytest_isobox.engine import InvalidSpec
            from pytest_isobox.images.reference import normalize_tag

            try:
                tag = normalize_tag(new_ref)
            except InvalidSpec:
                raise NotCached(f"{new_ref}: the engine's error") from None
        try:
            same = self._store.tagged(tag) == self._store.find(ref)
        except Unsure:
            same = False
        if not same:
            raise NotCached(f"{new_ref}: to be set")
