"""Choosing this machine's manifest from an image index, as Docker does."""

from __future__ import annotations

import platform

from pytest_isobox.images import config as oci
from pytest_isobox.images.registry.errors import NoMatchingPlatform

_ATTESTATION = "attestation-manifest"


def host_platform() -> tuple[str, str, str]:
    """(os, architecture, variant) of this machine in OCI spelling."""
    machine = platform.machine()
    variant = {"armv7l": "v7", "armv6l": "v6", "aarch64": "v8"}.get(machine, "")
    return "linux", oci.go_arch(), variant


def parse_platform(text: str) -> tuple[str, str, str]:
    """`os/arch[/variant]` or `arch` (Docker's `--platform`) -> (os, arch, variant)."""
    parts = [part.strip().lower() for part in text.strip().split("/")]
    if len(parts) == 1:
        parts = ["linux", *parts]
    if len(parts) > 3 or not all(parts):
        from pytest_isobox.engine import InvalidSpec

        raise InvalidSpec(f"invalid platform {text!r}: expected os/arch[/variant], e.g. "
                          "linux/arm64")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def _text(desc: dict) -> str:
    plat = desc.get("platform") or {}
    text = f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"
    return text + (f"/{plat['variant']}" if plat.get("variant") else "")


def is_attestation(desc: dict) -> bool:
    annotations = desc.get("annotations") or {}
    plat = desc.get("platform") or {}
    return (annotations.get("vnd.docker.reference.type") == _ATTESTATION
            or (plat.get("os") == "unknown" and plat.get("architecture") == "unknown"))


def choose(index: dict, what: str, platform: str | None = None) -> dict:
    """The descriptor for this platform (or `platform`, `os/arch[/variant]`): os and
    architecture must match; a variant is preferred when it matches (arm64 images often
    give none). NoMatchingPlatform lists what the index has."""
    want_os, want_arch, want_variant = parse_platform(platform) if platform \
        else host_platform()
    candidates = []
    for desc in index.get("manifests") or []:
        if not isinstance(desc, dict) or is_attestation(desc):
            continue
        plat = desc.get("platform") or {}
        if plat.get("os") == want_os and plat.get("architecture") == want_arch:
            variant = plat.get("variant", "")
            if variant and want_variant and variant != want_variant and want_arch != "arm64":
                continue
            candidates.append((variant == want_variant, desc))
    if not candidates:
        offered = sorted({_text(d) for d in index.get("manifests") or []
                          if isinstance(d, dict) and not is_attestation(d)})
        mine = f"{want_os}/{want_arch}" + (f"/{want_variant}" if want_variant else "")
        raise NoMatchingPlatform(f"{what}: no manifest for {mine} (available: "
                                 f"{', '.join(offered) or 'none'})")
    candidates.sort(key=lambda pair: not pair[0])
    return candidates[0][1]
