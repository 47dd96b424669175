"""What the native engine's run reaper (`pytest_isobox.reaper.RunReaper`) does once its
owner has died: the sweep the next engine opening the home would run, for that owner only."""

from __future__ import annotations

from pathlib import Path

from pytest_isobox.processes import ProcessIdentity


def reap_home(home: Path, limits: str, owner: ProcessIdentity, rootless: bool = False) -> None:
    """What the next engine opening `home` would sweep, restricted to the dead `owner`'s
    containers (with their cgroups, attachments, rules, state dirs), then the networks and
    temp names (layers being unpacked, blobs being pulled) of dead owners. (The owner's temp
    dirs outside the home go by the reaper itself: `reaper.remove_owned_temp_dirs`.)
    `rootless`: the home of a rootless engine, swept from inside its user namespace as any
    rootless engine does (the monitors have killed the containers; this takes the rest)."""
    from pytest_isobox.images.atomic import has_temps_of
    from pytest_isobox.native.engine import NativeEngine

    engine = NativeEngine(home, rootless=rootless, limits=limits, sweep_for=owner)
    try:
        if has_temps_of(home / "tmp", owner):
            engine.images_store  # noqa: B018 - opening the store sweeps dead owners' temps
    finally:
        engine.close()


def finish_home(home: Path, work: dict) -> None:
    """What a closing engine's `hand_over` left its reaper (see `NativeEngine.close`): the
    network teardown a CLI command does not wait for (`NetworkManager.finish_close`)."""
    network = work.get("network")
    if network:
        from pytest_isobox.native.network.manager import NetworkManager

        NetworkManager(home).finish_close(network)
