"""A build the daemon's builders cannot do, done by the native engine here and loaded.

The FROM images come from the daemon (saved, loaded into the native store unless the native
store has the same image already), the native engine builds with isobox's builder (its own
build cache across runs), and the result is saved and loaded into the daemon: the image is
the native engine's, byte for byte (same config, same layers, same id). The native engine is
opened by name (engine.registry), so this module imports nothing of it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from pytest_isobox.engine import BuildError, BuildStep, ImageNotFound, IsoboxError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pytest_isobox.docker.images import ImageMethods


def build_natively(daemon: ImageMethods, context: Path, bases: list[str], *,
                   tag: str | None, on_step: Callable[[BuildStep], None] | None,
                   on_output: Callable[[BuildStep, str], None] | None,
                   **options: object) -> str:
    """Build `context` on the native engine from the daemon's `bases`; returns the id the
    daemon knows the loaded image by (tagged `tag` there too)."""
    from pytest_isobox.engine.registry import open_engine

    try:
        native = open_engine("native")
    except IsoboxError as exc:
        raise BuildError(f"building natively (then loading into the daemon): the native "
                         f"engine cannot run here: {exc}") from None
    try:
        with tempfile.TemporaryDirectory(prefix="isobox-native-build-") as tmp:
            _carry_bases(daemon, native, bases, Path(tmp) / "bases.tar")
            image_id = native.build(context, tag=tag, on_step=on_step,  # type: ignore[arg-type]
                                    on_output=on_output, **options)
            archive = Path(tmp) / "image.tar"
            native.save_images([tag or image_id], archive)
            daemon.load_images(archive)
    finally:
        native.close()
    loaded = daemon.image_inspect(tag or image_id).id
    if loaded != image_id:
        raise BuildError(f"the image built natively ({image_id}) was loaded into the daemon "
                         f"as {loaded}")
    return loaded


def _carry_bases(daemon: ImageMethods, native: object, bases: list[str], archive: Path) -> None:
    """The daemon's FROM images into the native store (only those it lacks, by id)."""
    missing = []
    for base in bases:
        wanted = daemon.image_inspect(base).id
        try:
            if native.image_inspect(base).id == wanted:  # type: ignore[attr-defined]
                continue
        except ImageNotFound:
            pass
        missing.append(base)
    if missing:
        daemon.save_images(missing, archive)
        native.load_images(archive)  # type: ignore[attr-defined]
