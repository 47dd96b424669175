"""What the native engine's run reaper (`pytest_isobox.reaper.RunReaper`) does once its
owner has died: the sweep the next engine opening the home would run, for that owner only."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.processes import ProcessIdentity


def reap_home(home: Path, limits: str, owner: ProcessIdentity) -> None:
    """What the next engine opening `home` would sweep, restricted to the dead `owner`'s
    containers (with their cgroups, attachments, rules, state dirs), then the networks and
    temp names (layers being unpacked, blobs being pulled) of dead owners, and the owner's
    heredoc script dirs of a build's RUN step (in the system's temp dir)."""
    import tempfile

    from pytest_isobox.builder.builder import heredoc_prefix
    from pytest_isobox.images.atomic import has_temps_of, remove_path
    from pytest_isobox.native.engine import NativeEngine

    engine = NativeEngine(home, rootless=False, limits=limits, sweep_for=owner)
    try:
        if has_temps_of(home / "tmp", owner):
            engine.images_store  # noqa: B018 - opening the store sweeps dead owners' temps
        for scripts in Path(tempfile.gettempdir()).glob(heredoc_prefix(owner) + "*"):
            remove_path(scripts)  # a RUN step's heredoc scripts
    finally:
        engine.close()
