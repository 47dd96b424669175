"""The errors of the seam: types a user can catch, each message naming the value at fault."""

from __future__ import annotations


class IsoboxError(Exception):
    """Base of every error this package raises on purpose."""


class EngineUnavailable(IsoboxError):
    """A prerequisite is missing (not root, no overlayfs, no cgroup controller, no daemon)."""


class ImageNotFound(IsoboxError):
    """No image matches the reference."""


class ContainerNotFound(IsoboxError):
    """No container matches the id or name."""


class NetworkNotFound(IsoboxError):
    """No network matches the name or id."""


class VolumeNotFound(IsoboxError):
    """No volume has that name."""


class ConflictError(IsoboxError):
    """A name is taken, or a resource is in use (an image used by a container, a busy network)."""


class BuildError(IsoboxError):
    """A build failed; the message names the Dockerfile, the line or the failing step."""


class ContainerError(IsoboxError):
    """A container could not be created, started, exec'd into, or copied to or from."""


class InvalidSpec(IsoboxError, ValueError):
    """A value given by the user is malformed; the message names it."""
