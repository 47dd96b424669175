"""Rootless mode of the native engine: containers for users who are not root (issue 6).

A user namespace makes the user root inside with the user's subordinate ids (`idmap`); one
per home is held by a long-lived holder process (`holder`) that every engine process joins
(`userns`; work inside it runs in forked children, `forked`). Mounts that need real root are
replaced by ones a user namespace allows (`mounts`); networks live in the holder's helper
network namespace (`networks`), reach out through slirp4netns (`outbound`) and published
ports are relayed from the host's loopback (`ports`, `agent`); cgroup limits apply only where
the user has a delegated cgroup v2 subtree (`limits`); a store is used by one owner only
(`store`). `prerequisites` says in one error what is missing; `mode` is what the engine holds.
"""

import os

LIMIT_MODES = ("strict", "best-effort")


def check_mode(mode: str) -> str:
    """A limits mode: "strict" (a limit rootless mode cannot apply fails the container) or
    "best-effort" (it runs without); here, not in `limits`, so root's engine checks it
    without importing the cgroup code."""
    if mode not in LIMIT_MODES:
        from pytest_isobox.engine import InvalidSpec

        raise InvalidSpec(f"invalid limits mode {mode!r}: expected one of {', '.join(LIMIT_MODES)}")
    return mode


def is_rootless(force: bool | None = None) -> bool:
    """Rootless unless root: euid != 0, or `force` (True/False) says otherwise."""
    return os.geteuid() != 0 if force is None else force
