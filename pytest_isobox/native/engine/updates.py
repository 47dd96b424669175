"""`docker update`: a container's limits and restart policy changed after create. The new
values replace the old in its config.json (so later starts use them) and, while it runs,
are written into its cgroup at once."""

from __future__ import annotations

from pytest_isobox.engine import InvalidSpec, RestartPolicy
from pytest_isobox.engine.records import as_dict

_UNSET = object()


class UpdatesRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    def update(self, container: str, *, mem_limit: int | None | object = _UNSET,
               cpus: float | None | object = _UNSET, cpu_shares: int | None | object = _UNSET,
               pids_limit: int | None | object = _UNSET,
               restart: RestartPolicy | None | object = _UNSET) -> None:
        """Only the values given change; None removes a limit."""
        from pytest_isobox.native.specs import spec_from_dict
        from pytest_isobox.native.state import write_json_atomic

        cdir = self._find(container)
        config = dict(cdir.config)
        raw = dict(config["spec"])
        for key, value in (("mem_limit", mem_limit), ("cpus", cpus),
                           ("cpu_shares", cpu_shares), ("pids_limit", pids_limit)):
            if value is not _UNSET:
                raw[key] = value
        if restart is not _UNSET:
            raw["restart"] = as_dict(restart) if restart is not None else None
        spec = spec_from_dict(raw)
        limits, _ = self._limits_plan(spec)  # InvalidSpec for a bad value, before any change
        state = self._read_state(cdir)
        running = state["status"] == "running" and self._monitor_alive(state)
        if running and self._rootless is not None and limits.controllers():
            raise InvalidSpec("update: a running rootless container's limits cannot change")
        config["spec"] = raw
        write_json_atomic(cdir.path / "config.json", config)
        cdir._config = config
        if running:
            self._cgroup(cdir.id).create(limits)  # the leaf exists: its limits are rewritten
