"""Named networks through the NetworkManager (native/network/)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from pytest_isobox.engine import (
    ConflictError,
    ContainerError,
    InvalidSpec,
    NetworkAttachment,
    NetworkInfo,
    NetworkNotFound,
)
from pytest_isobox.native.specs import network_kind, spec_from_dict
from pytest_isobox.native.state import mark_addresses, write_json_atomic

DEFAULT_NETWORK, SPECIAL_MODES = "bridge", ("host", "none")


class NetworksRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    def network_create(self, name: str, *, subnet: str | None = None,
                       labels: dict[str, str] | None = None, gateway: str | None = None,
                       internal: bool = False) -> NetworkInfo:
        """`gateway`: the bridge's address in `subnet` (its first host unless given);
        `internal`: containers on it talk to each other only (no route out, no NAT)."""
        self._own_resources()
        options = {k: v for k, v in (("gateway", gateway), ("internal", internal)) if v}
        return self._network_manager().create(name, subnet=subnet, labels=labels, **options)

    def network_connect(self, network: str, container: str, *,
                        aliases: list[str] | None = None, ip: str | None = None) -> None:
        """Docker's `network connect`: a running container is wired at once (a new veth and
        address, names on the network resolve), a stopped one at its next start; either
        keeps the network across restarts, as Docker does."""
        cdir, spec, wanted = self._connections(container, "connect")
        info = self.network_inspect(network)
        if info.name in (DEFAULT_NETWORK, *SPECIAL_MODES) and aliases:
            raise InvalidSpec("network-scoped alias is supported only for containers in user "
                              "defined networks")
        if any(w.network == info.name for w in wanted):
            raise ConflictError(f"endpoint with name {cdir.name} already exists in network "
                                f"{info.name}")
        if ip and info.name == DEFAULT_NETWORK:
            raise InvalidSpec("user specified IP address is supported on user defined networks "
                              "only")
        if ip:
            from pytest_isobox import dockerargs

            ip = dockerargs.parse_ip(ip, "--ip")
        attachment = NetworkAttachment(info.name, tuple(aliases or ()), ip)
        pid = self._running_pid(cdir)
        if pid is not None:
            net = self._in_network_namespace(
                self._network_manager().connect, cdir.id, cdir.name, cdir.config["hostname"],
                pid, attachment, cdir.hosts, ip=ip)
            self._record_addresses(cdir, add=(info.name, net["ip"]))
        self._record_networks(cdir, spec, [*wanted, attachment])

    def network_disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        """Docker's `network disconnect`: the container leaves the network now if running,
        and for good."""
        cdir, spec, wanted = self._connections(container, "disconnect")
        try:
            name = self.network_inspect(network).name
        except NetworkNotFound:
            if not force:
                raise
            name = network
        if not any(w.network == name for w in wanted):
            raise ContainerError(f"container {cdir.id} is not connected to network {network}")
        pid = self._running_pid(cdir)
        if pid is not None:
            self._in_network_namespace(self._network_manager().disconnect, cdir.id, name, pid)
            # its published ports led to the first network's address: gone with it
            self._record_addresses(cdir, drop=name, unpublish=wanted[0].network == name)
        self._record_networks(cdir, spec, [w for w in wanted if w.network != name])

    def _in_network_namespace(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`func` here, or (rootless) in a child inside the user namespace, where the helper
        netns with the bridges and the containers' netns may be entered."""
        if self._rootless is None:
            return func(*args, **kwargs)
        return self._rootless.run(functools.partial(func, **kwargs), *args)

    def _connections(self, container: str, verb: str) -> tuple[Any, dict, list]:
        """The container, its spec (as stored) and the networks it is on; one line when its
        network mode has no networks to change."""
        from pytest_isobox.native.network.manager import requested_networks

        cdir = self._find(container)
        spec = dict(cdir.config["spec"])
        if cdir.config.get("networks_detached"):  # disconnected from every network
            return cdir, spec, []
        kind = network_kind(spec)
        if kind == "host":
            raise InvalidSpec("container cannot be disconnected from host network or "
                              "connected to host network")
        if kind == "none":
            raise InvalidSpec("container cannot be connected to multiple networks with one "
                              "of the networks in private (none) mode")
        return cdir, spec, requested_networks(spec_from_dict(spec))

    def _running_pid(self, cdir: Any) -> int | None:
        state = self._read_state(cdir)
        if state.get("status") == "running" and state.get("pid") \
                and self._monitor_alive(state):
            return int(state["pid"])
        return None

    @staticmethod
    def _record_addresses(cdir: Any, *, add: tuple[str, str] | None = None,
                          drop: str | None = None, unpublish: bool = False) -> None:
        state = cdir.read_state()
        ips = {k: v for k, v in (state.get("ips") or {}).items() if k != drop}
        if add is not None:
            ips[add[0]] = add[1]
        cdir.write_state(mark_addresses(state, ips, unpublished=unpublish))

    @staticmethod
    def _record_networks(cdir: Any, spec: dict, wanted: list) -> None:
        """The networks in config.json, for the next start and inspect (rewritten: `network
        connect` is off the start path). None left: the container starts with loopback
        only, and may be connected again."""
        config = dict(cdir.config)
        spec["networks"] = [{"network": w.network, "aliases": list(w.aliases),
                             **({"ip": w.ip} if w.ip else {})} for w in wanted]
        if not wanted:
            spec["network_mode"] = "none"
        elif config.get("networks_detached"):
            spec["network_mode"] = "bridge"
        config["networks_detached"] = not wanted
        config["spec"] = spec
        write_json_atomic(cdir.path / "config.json", config)
        cdir._config = config

    def network_remove(self, name: str) -> None:
        if self._rootless is not None:  # its bridge is in the user namespace's helper netns
            self._rootless.run(self._network_manager().remove, name)
        else:
            self._network_manager().remove(name)

    def network_inspect(self, name: str) -> NetworkInfo:
        return self._network_manager().inspect(name)

    def network_document(self, name: str) -> dict:
        """Docker's network inspect document: Internal, Created and members by name."""
        from pytest_isobox.engine import documents  # (datetime: only here)

        info = self.network_inspect(name)
        names = {}
        for cid in info.containers:
            with contextlib.suppress(Exception):  # removed meanwhile
                names[cid] = self._find(cid).name
        return documents.network_document(info, container_names=names)

    def networks(self) -> list[NetworkInfo]:
        return self._network_manager().list()
