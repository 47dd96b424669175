"""A container's keeper: the process that applies its restart policy and runs its healthcheck,
as dockerd does for Docker's containers (there is no daemon here).

Started beside the container (launch role) when it has a restart policy other than `no` or a
healthcheck (its own or its image's); it ends when the container is removed, or when it has
exited for good. It writes only `keeper.json` in the container's directory (RestartCount,
State.Health), never state.json, whose writers are the monitor's. `stop` and `rm` leave a
`stopped` file first: a container stopped by hand is not restarted (Docker's rule).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from pytest_isobox.engine import ContainerNotFound, IsoboxError

KEEPER_FILE = "keeper.json"
STOPPED_FILE = "stopped"
LOG_ENTRIES = 5  # Docker keeps the last five results
DEFAULTS = {"interval": 30.0, "timeout": 30.0, "retries": 3, "start_period": 0.0}
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 60.0  # s between restarts, doubling (dockerd's)


def health_config(spec: dict, image_config: dict) -> dict | None:
    """The healthcheck in force: the spec's (its empty test keeps the image's command), else
    the image's HEALTHCHECK (times in nanoseconds there); None when there is none or NONE."""
    image = image_config.get("Healthcheck") or {}
    own = spec.get("healthcheck") or {}
    test = list(own.get("test") or image.get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    merged = {}
    for key, docker_key in (("interval", "Interval"), ("timeout", "Timeout"),
                            ("retries", "Retries"), ("start_period", "StartPeriod")):
        value = own.get(key) or 0
        if not value and image.get(docker_key):
            value = image[docker_key] if key == "retries" else image[docker_key] / 1e9
        merged[key] = value or DEFAULTS[key]
    return {"test": test, **merged}


def health_argv(test: list[str]) -> list[str]:
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return list(test[1:]) if test[0] == "CMD" else list(test)


def needed(spec: dict, image_config: dict) -> bool:
    restart = spec.get("restart") or {}
    return (restart.get("name") or "no") != "no" or health_config(spec, image_config) is not None


def should_restart(restart: dict, exit_code: int, restarts: int) -> bool:
    """Docker's policies: always and unless-stopped restart whatever the code; on-failure on
    a non-zero one, at most maximum_retry times when that is > 0."""
    name = restart.get("name") or "no"
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure" and exit_code != 0:
        limit = int(restart.get("maximum_retry") or 0)
        return limit <= 0 or restarts < limit
    return False


def read(cdir_path: Path) -> dict:
    try:
        return json.loads((cdir_path / KEEPER_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write(cdir_path: Path, doc: dict) -> None:
    tmp = cdir_path / f".{KEEPER_FILE}.tmp"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, cdir_path / KEEPER_FILE)


def keep(home: str, cid: str) -> int:
    """The keeper's life (in a process of its own): wait, check health, restart."""
    from pytest_isobox.native.engine import NativeEngine

    os.setsid()  # a session of its own, and no terminal or pipe of the caller kept open
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    engine = NativeEngine(home=home, read_only=True)
    try:
        return _loop(engine, cid)
    except ContainerNotFound:
        return 0
    except Exception as exc:  # its stderr is /dev/null: say why in keeper.json, for inspect
        with contextlib.suppress(Exception):
            path = engine._find(cid).path
            _write(path, {**read(path), "keeper_error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        engine.close()


def _loop(engine: Any, cid: str) -> int:
    cdir = engine._find(cid)
    config = cdir.config
    spec = config["spec"]
    restart = spec.get("restart") or {}
    health = health_config(spec, config.get("image_config") or {})
    doc = read(cdir.path)
    doc.setdefault("restart_count", 0)
    doc["keeper_pid"] = os.getpid()  # (tests wait for its end)
    backoff = BACKOFF_FIRST
    code: int | None = None  # None: it runs (wait for its end); else why it is not running
    started = time.time()
    while True:
        if code is None:
            started = time.time()
            if health is not None:
                doc["health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
            _write(cdir.path, doc)
            code = _watch(engine, cid, cdir.path, health, doc, started)
            if cid in engine._monitors:  # ours (a restart): its cgroup and network go back now
                with contextlib.suppress(IsoboxError, OSError):
                    engine._settle(cdir)
        if (cdir.path / STOPPED_FILE).exists() or not cdir.path.is_dir() \
                or not should_restart(restart, code, doc["restart_count"]):
            return 0
        time.sleep(backoff)  # dockerd's backoff, so a crashing command does not spin
        backoff = BACKOFF_FIRST if time.time() - started > 10 else min(backoff * 2, BACKOFF_MAX)
        if (cdir.path / STOPPED_FILE).exists() or not cdir.path.is_dir():
            return 0
        doc["restart_count"] += 1
        _write(cdir.path, doc)
        try:
            engine._start(cdir, None)  # (not start(): that clears a stop made meanwhile)
            code = None
        except ContainerNotFound:
            return 0
        except IsoboxError as exc:  # could not start (e.g. its network torn down meanwhile
            code = 125  # by the last process that used it): a failed try, counted, tried again
            doc["keeper_error"] = str(exc)
            continue
        if (cdir.path / STOPPED_FILE).exists():  # stopped while this restart was on its way
            with contextlib.suppress(IsoboxError):
                engine.stop(cid)
            return 0


def _watch(engine: Any, cid: str, path: Path, health: dict | None, doc: dict,
           started: float) -> int:
    """Until the container exits (its code returned), running its healthcheck when due."""
    next_check = started + (health["interval"] if health else 0)
    while True:
        timeout = None if health is None else max(0.0, next_check - time.time())
        try:
            return engine.wait(cid, timeout=timeout)
        except TimeoutError:
            pass
        assert health is not None
        _check(engine, cid, health, doc["health"], started)
        _write(path, doc)
        next_check = time.time() + health["interval"]


def _check(engine: Any, cid: str, health: dict, state: dict, started: float) -> None:
    """One probe, recorded as Docker does: the last five results, the failing streak, and
    the status (a failure in the start period does not count)."""
    from pytest_isobox.engine.documents import iso_time  # (datetime: only a probe's record)

    begin = time.time()
    try:
        result = engine.exec(cid, health_argv(health["test"]))
        code, output = result.exit_code, result.output.decode(errors="replace")
    except IsoboxError as exc:
        code, output = -1, str(exc)
    end = time.time()
    if end - begin > health["timeout"]:
        code, output = -1, f"Health check exceeded timeout ({health['timeout']}s)"
    state["Log"] = [*state["Log"], {"Start": iso_time(begin), "End": iso_time(end),
                                    "ExitCode": code, "Output": output[:4096]}][-LOG_ENTRIES:]
    if code == 0:
        state["Status"], state["FailingStreak"] = "healthy", 0
    elif begin - started >= health["start_period"] or state["Status"] != "starting":
        state["FailingStreak"] += 1
        if state["FailingStreak"] >= health["retries"]:
            state["Status"] = "unhealthy"


def mark_stopped(path: Path) -> None:
    """Tell the keeper the container is stopped by hand (before the signal goes)."""
    with contextlib.suppress(OSError):
        (path / STOPPED_FILE).touch()


def clear_stopped(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (path / STOPPED_FILE).unlink()
