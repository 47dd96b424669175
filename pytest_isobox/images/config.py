"""OCI image configs and manifests, with the field names and types Docker reads.

A config's bytes are canonical JSON (sorted keys, no spaces), so the same document always
has the same digest, and that digest is the image id.
"""

from __future__ import annotations

import copy
import json
import os

from pytest_isobox.images.blobs import sha256_digest

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The "config" section's keys (Docker's container.Config subset that images carry).
CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir",
               "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild", "ArgsEscaped")

_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def go_arch() -> str:
    """This machine's architecture in Go's (and OCI's) spelling."""
    machine = os.uname().machine
    return _GO_ARCH.get(machine, machine)


def now() -> str:
    """The current time in RFC 3339, as image configs record it."""
    from datetime import UTC, datetime  # (only a config being written needs it)

    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def encode(doc: dict) -> bytes:
    """Canonical JSON bytes of a config or manifest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The OCI ChainIDs of a layer stack: the first is its diff id, then sha256(parent + ' ' + diff)."""
    chain: list[str] = []
    for diff_id in diff_ids:
        chain.append(diff_id if not chain else sha256_digest(f"{chain[-1]} {diff_id}".encode()))
    return chain


def new_config(base: dict | None, config: dict, diff_ids: list[str], history: dict,
               author: str | None = None) -> dict:
    """An image config: `base`'s document with its "config" section replaced by `config`,
    rootfs set to `diff_ids` and `history` appended."""
    doc = copy.deepcopy(base) if base else {}
    doc.setdefault("architecture", go_arch())
    doc.setdefault("os", "linux")
    doc["created"] = history.get("created") or now()
    doc["config"] = {k: v for k, v in config.items() if v is not None}
    doc["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    doc["history"] = [*doc.get("history", []), history]
    if author is not None:
        doc["author"] = author
    for stale in ("container", "container_config", "docker_version", "id", "parent"):
        doc.pop(stale, None)
    return doc


def new_history(created_by: str, comment: str = "", empty_layer: bool = False) -> dict:
    entry: dict = {"created": now(), "created_by": created_by}
    if comment:
        entry["comment"] = comment
    if empty_layer:
        entry["empty_layer"] = True
    return entry


def new_manifest(config_digest: str, config_size: int, layers: list[tuple[str, int]]) -> dict:
    """An OCI image manifest for uncompressed layers given as (digest, size)."""
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": d, "size": s} for d, s in layers],
    }
