"""Registry failures, each a clear one-line message naming the image or registry."""

from __future__ import annotations

from pytest_isobox.engine import ImageNotFound, IsoboxError


class RegistryError(IsoboxError):
    """A registry refused or failed a request (the message names the registry and image)."""


class Unauthorized(RegistryError):
    """The registry wants credentials we do not have, or refused those we sent."""


class NameUnknown(RegistryError, ImageNotFound):
    """The repository or tag does not exist on the registry."""


class OfflineError(RegistryError, ImageNotFound):
    """ISOBOX_OFFLINE=1 (or --pull=never) and the image is not in the store."""


class NoMatchingPlatform(RegistryError):
    """An image index without a manifest for this machine's platform."""
