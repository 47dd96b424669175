"""Named networks through the NetworkManager (native/network/)."""

from __future__ import annotations

from pytest_isobox.engine import NetworkInfo


class NetworksRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    def network_create(self, name: str, *, subnet: str | None = None,
                       labels: dict[str, str] | None = None) -> NetworkInfo:
        self._own_resources()
        return self._network_manager().create(name, subnet=subnet, labels=labels)

    def network_remove(self, name: str) -> None:
        if self._rootless is not None:  # its bridge is in the user namespace's helper netns
            self._rootless.run(self._network_manager().remove, name)
        else:
            self._network_manager().remove(name)

    def network_inspect(self, name: str) -> NetworkInfo:
        return self._network_manager().inspect(name)

    def networks(self) -> list[NetworkInfo]:
        return self._network_manager().list()

