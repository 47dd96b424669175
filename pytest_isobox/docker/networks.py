"""Networks and volumes of a Docker daemon (part of DockerEngine), labelled as ours."""

from __future__ import annotations

from typing import Any

from pytest_isobox.docker.client import DockerClient
from pytest_isobox.engine import PERSISTENT_LABEL, IsoboxError, NetworkInfo


class NetworkMethods:
    """Networks and volumes of the Engine protocol; mixed into DockerEngine, which sets
    `client` and `labels` (our ownership labels, added to every object made here)."""

    client: DockerClient
    labels: dict[str, str]
    _watchdog: Any  # pytest_isobox.reaper.RunReaper

    def settle_removals(self) -> None:  # DockerEngine's: containers removed in the background
        raise NotImplementedError

    def network_create(
        self, name: str, *, subnet: str | None = None, labels: dict[str, str] | None = None,
        gateway: str | None = None, internal: bool = False,
    ) -> NetworkInfo:
        """A bridge network; persistent when `labels` holds `io.isobox.persistent=1`."""
        if (labels or {}).get(PERSISTENT_LABEL) != "1":
            self._watchdog.ensure()  # (DockerEngine's: it removes the network if we die)
        body: dict = {"Name": name, "Driver": "bridge", "CheckDuplicate": True,
                      "Internal": internal, "Labels": {**(labels or {}), **self.labels}}
        if subnet:
            config = {"Subnet": subnet, **({"Gateway": gateway} if gateway else {})}
            body["IPAM"] = {"Driver": "default", "Config": [config]}
        elif gateway:
            raise IsoboxError(f"--gateway {gateway}: needs --subnet")
        self.client.post_json("/networks/create", body=body, kind="network")
        return self.network_inspect(name)

    def network_connect(self, network: str, container: str, *,
                        aliases: list[str] | None = None, ip: str | None = None) -> None:
        endpoint: dict = {"Aliases": list(aliases or [])}
        if ip:
            endpoint["IPAMConfig"] = {"IPv4Address": ip}
        self.client.post_json(f"/networks/{network}/connect", body={
            "Container": container, "EndpointConfig": endpoint}, kind="network")

    def network_disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        self.client.post_json(f"/networks/{network}/disconnect",
                              body={"Container": container, "Force": force}, kind="network")

    def network_remove(self, name: str) -> None:
        self.settle_removals()  # a container still being removed holds an endpoint
        self.client.request("DELETE", f"/networks/{name}", kind="network")

    def network_document(self, name: str) -> dict:
        """The daemon's own network inspect document."""
        return self.client.get_json(f"/networks/{name}", kind="network")

    def volume_document(self, name: str) -> dict:
        """The daemon's own volume inspect document."""
        return self.client.get_json(f"/volumes/{name}", kind="volume")

    def network_inspect(self, name: str) -> NetworkInfo:
        doc: dict = self.network_document(name)
        config = ((doc.get("IPAM") or {}).get("Config") or [{}])[0]
        return NetworkInfo(
            name=doc["Name"], id=doc["Id"], driver=doc.get("Driver", ""),
            subnet=config.get("Subnet"), gateway=config.get("Gateway"),
            containers={cid: (c.get("IPv4Address") or "").split("/")[0]
                        for cid, c in (doc.get("Containers") or {}).items()},
            labels=dict(doc.get("Labels") or {}),
        )

    def networks(self) -> list[NetworkInfo]:
        infos = []
        for summary in self.client.get_json("/networks") or []:
            try:
                infos.append(self.network_inspect(summary["Id"]))
            except IsoboxError:  # removed meanwhile
                continue
        return infos

    # ------------------------------------------------------------------ volumes

    def volume_create(self, name: str, *, labels: dict[str, str] | None = None) -> str:
        """A named local volume, labelled as ours (volumes are never swept: they hold data)."""
        doc = self.client.post_json("/volumes/create", body={
            "Name": name, "Driver": "local", "Labels": {**(labels or {}), **self.labels},
        }, kind="volume")
        return doc["Name"]

    def volume_remove(self, name: str, *, force: bool = False) -> None:
        self.settle_removals()  # a container still being removed holds its mount
        self.client.request("DELETE", f"/volumes/{name}", {"force": force}, kind="volume")

    def volumes(self) -> list[str]:
        doc = self.client.get_json("/volumes") or {}
        return sorted(v["Name"] for v in doc.get("Volumes") or [])
