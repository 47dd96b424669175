"""Docker's container JSON (`docker inspect`) for a native container, from its state dir."""

from __future__ import annotations

from datetime import UTC, datetime

from pytest_isobox.engine import ContainerState


def container_json(cid: str, config: dict, raw: dict, st: ContainerState) -> dict:
    """The fields of Docker's document this engine knows: Id, Name, State, Config,
    HostConfig, Mounts, NetworkSettings."""
    spec = config["spec"]
    return {
        "Id": cid, "Name": "/" + config["name"], "Created": _iso(config["created"]),
        "Path": config["argv"][0], "Args": config["argv"][1:], "Image": config["image_id"],
        "State": {
            "Status": st.status, "Running": st.running, "Paused": False,
            "Restarting": False, "OOMKilled": st.oom_killed, "Dead": st.status == "dead",
            "Pid": st.pid or 0, "ExitCode": st.exit_code or 0, "Error": raw.get("error", ""),
            "StartedAt": _iso(st.started_at), "FinishedAt": _iso(st.finished_at),
        },
        "Config": {
            "Hostname": config["hostname"], "User": config["user"],
            "Env": [f"{k}={v}" for k, v in config["env"].items()],
            "Cmd": spec["command"] if spec["command"] is not None
            else config["image_config"].get("Cmd"),
            "Entrypoint": spec["entrypoint"] if spec["entrypoint"] is not None
            else config["image_config"].get("Entrypoint"),
            "WorkingDir": config["workdir"], "Image": config["image"],
            "Labels": spec["labels"], "Tty": spec["tty"], "OpenStdin": spec["stdin_open"],
            "StopSignal": config["stop_signal"],
        },
        "HostConfig": {
            "Memory": spec["mem_limit"] or 0,
            "NanoCpus": int((spec["cpus"] or 0) * 1e9), "CpuShares": spec["cpu_shares"] or 0,
            "PidsLimit": spec["pids_limit"], "Init": spec["init"],
            "NetworkMode": spec["network_mode"], "AutoRemove": spec["auto_remove"],
        },
        "Mounts": [{"Type": m["type"], "Source": m["source"], "Destination": m["target"],
                    "RW": not m["read_only"]} for m in spec["mounts"]],
        "NetworkSettings": {
            "Networks": {n: {"IPAddress": ip} for n, ip in st.ips.items()},
            "Ports": {k: [{"HostIp": h, "HostPort": str(p)} for h, p in v]
                      for k, v in st.ports.items()},
        },
    }



def _iso(ts: float | None) -> str:
    """Docker's timestamps; its zero time for never."""
    if not ts:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


