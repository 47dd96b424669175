"""Named networks through the NetworkManager (native/network/)."""

from __future__ import annotations

from ipaddress import IPv4Network, ip_address

from pytest_isobox.engine import InvalidSpec, NetworkInfo


def _check_gateway(subnet: str | None, gateway: str) -> None:
    if subnet is None:
        raise InvalidSpec(f"--gateway {gateway}: needs --subnet")
    try:
        net, address = IPv4Network(subnet, strict=False), ip_address(gateway)
    except ValueError as exc:
        raise InvalidSpec(f"--gateway {gateway!r} or --subnet {subnet!r}: {exc}") from None
    if address != net.network_address + 1:
        raise InvalidSpec(f"--gateway {gateway}: the native engine's gateway is the subnet's "
                          f"first address, {net.network_address + 1}")


class NetworksRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    def network_create(self, name: str, *, subnet: str | None = None,
                       labels: dict[str, str] | None = None, gateway: str | None = None,
                       internal: bool = False) -> NetworkInfo:
        """`gateway`: only the subnet's first address, the bridge's own (this engine's
        layout); `internal` (no route out) is not offered yet: both say so in one line."""
        if internal:
            raise InvalidSpec("network create --internal: not supported by the native engine yet")
        if gateway is not None:
            _check_gateway(subnet, gateway)
        self._own_resources()
        return self._network_manager().create(name, subnet=subnet, labels=labels)

    def network_connect(self, network: str, container: str, *,
                        aliases: list[str] | None = None) -> None:
        raise InvalidSpec("network connect: not supported by the native engine yet (give "
                          "--network at run/create)")

    def network_disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        raise InvalidSpec("network disconnect: not supported by the native engine yet")

    def network_remove(self, name: str) -> None:
        if self._rootless is not None:  # its bridge is in the user namespace's helper netns
            self._rootless.run(self._network_manager().remove, name)
        else:
            self._network_manager().remove(name)

    def network_inspect(self, name: str) -> NetworkInfo:
        return self._network_manager().inspect(name)

    def networks(self) -> list[NetworkInfo]:
        return self._network_manager().list()

