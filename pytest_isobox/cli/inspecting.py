"""Docker's inspect documents for the CLI: from the engine when it writes them itself (a
Docker daemon, the native engine's containers), else shaped from the seam's types by
engine/documents.py."""

from __future__ import annotations

from pytest_isobox.engine import (
    ContainerNotFound,
    ImageNotFound,
    IsoboxError,
    NetworkNotFound,
    VolumeNotFound,
    documents,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: `inspect` loads neither the protocol nor the specs)
    from collections.abc import Callable

    from pytest_isobox.engine import Engine

KINDS = ("container", "image", "network", "volume")


def print_inspected(refs: list[str], find: Callable[[str], dict], fmt: str | None) -> int:
    """What every `inspect` verb prints: the documents `find` gives for `refs` (as JSON, or
    each through the `-f` template), each one not found named on stderr; 1 if any was not."""
    import sys

    from pytest_isobox.cli.output import compile_format, print_documents

    template = compile_format(fmt)  # a bad template fails before any lookup
    docs, status = [], 0
    for ref in refs:
        try:
            docs.append(find(ref))
        except IsoboxError as exc:
            print(f"isobox: {exc}", file=sys.stderr)
            status = 1
    print_documents(docs, template)
    return status


def find_document(engine: Engine, ref: str, kind: str | None, *, size: bool = False) -> dict:
    """The first object named `ref` in Docker's order (container, image, network, volume), or
    of `kind` only; one line naming `ref` when there is none."""
    for candidate in (kind,) if kind else KINDS:
        try:
            if candidate == "container":
                return container_document(engine, ref, size=size)
            if candidate == "image":
                return image_document(engine, ref)
            if candidate == "network":
                return network_document(engine, ref)
            return volume_document(engine, ref)
        except (ContainerNotFound, ImageNotFound, NetworkNotFound, VolumeNotFound):
            continue
        except IsoboxError:
            if kind:  # e.g. an engine without networks, asked for one
                raise
            continue
    raise ContainerNotFound(f"no such object: {ref}" if not kind else f"no such {kind}: {ref}")


def container_document(engine: Engine, ref: str, *, size: bool = False) -> dict:
    return engine.inspect(ref, size=True) if size else engine.inspect(ref)  # type: ignore[call-arg]


def image_document(engine: Engine, ref: str) -> dict:
    own = getattr(engine, "image_document", None)
    if own is not None:
        return own(ref)
    return documents.image_document(engine.image_inspect(ref))


def image_history(engine: Engine, ref: str) -> list[dict]:
    own = getattr(engine, "image_history", None)
    if own is not None:
        return own(ref)
    return documents.image_history(engine.image_inspect(ref))


def network_document(engine: Engine, name: str) -> dict:
    if name in ("host", "none") and not _has_network(engine, name):
        return _mode_network(name)
    own = getattr(engine, "network_document", None)
    if own is not None:
        return own(name)
    info = engine.network_inspect(name)
    names = {}
    for cid in info.containers:
        try:
            names[cid] = engine.state(cid).name
        except ContainerNotFound:  # removed meanwhile
            continue
    return documents.network_document(info, container_names=names)


def _has_network(engine: Engine, name: str) -> bool:
    try:
        engine.network_inspect(name)
        return True
    except (NetworkNotFound, IsoboxError):
        return False


def _mode_network(name: str) -> dict:
    """host and none: Docker lists them as networks; an engine without such objects has the
    modes still (`--network host`), so inspect shows them as Docker does."""
    from pytest_isobox.engine import NetworkInfo

    driver = "host" if name == "host" else "null"
    doc = documents.network_document(NetworkInfo(name, name, driver, None, None))
    doc["IPAM"]["Config"] = []
    return doc


def volume_document(engine: Engine, name: str) -> dict:
    own = getattr(engine, "volume_document", None)
    if own is not None:
        return own(name)
    if name not in engine.volumes():
        raise VolumeNotFound(f"no such volume: {name}")
    return documents.volume_document(name, "")
