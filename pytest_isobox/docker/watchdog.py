"""The docker engine's watchdog: when the engine's process dies, its containers and networks
on the daemon go too, without a helper container (testcontainers' Ryuk) and without waiting
for the next engine's sweep.

It is the native engine's run reaper (`pytest_isobox.reaper.RunReaper`: a forked `isobox-reaper`
holding a pidfd of the owner, forked before the first container or network, gone when the
engine closes normally) with another job on the owner's death: remove, through a new client
over the same transport (unix socket, TCP+TLS, ssh), every container and network labelled with
this very owner (`io.isobox.owner=<host>:<pid>:<start>`) that is not persistent. A remote
daemon is cleaned too, since the owner's label names this host and process, whatever the
daemon's host.
"""

from __future__ import annotations

import contextlib
import json

from pytest_isobox.docker.address import DaemonAddress
from pytest_isobox.docker.client import DockerClient
from pytest_isobox.docker.ownership import OWNER_LABEL, PERSISTENT_LABEL
from pytest_isobox.engine import IsoboxError


def remove_owned(address: DaemonAddress, owner_label: str) -> list[str]:
    """Remove the owner's non-persistent containers, then its networks; one line each."""
    client = DockerClient(address)
    removed: list[str] = []
    try:
        filters = json.dumps({"label": [f"{OWNER_LABEL}={owner_label}"]})
        for kind, listing, query in (("container", "/containers/json", {"all": True}),
                                     ("network", "/networks", {})):
            for doc in client.get_json(listing, {**query, "filters": filters}) or []:
                if (doc.get("Labels") or {}).get(PERSISTENT_LABEL) == "1":
                    continue
                with contextlib.suppress(IsoboxError):  # gone meanwhile
                    client.request("DELETE", f"/{kind}s/{doc['Id']}",
                                   {"force": True, "v": True} if kind == "container" else None,
                                   kind=kind)
                    removed.append(f"{kind} {doc['Id'][:12]}")
    finally:
        client.close()
    return removed
