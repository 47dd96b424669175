"""Compose files (the compose-spec) read into typed services and run on an isobox engine.

Modules, one job each: `interpolation` (`${VAR}` forms), `loading` (YAML, several files merged
as compose merges them, `extends`), `schema` (the compose-spec JSON schema), `model` (typed
services, refused keys, mapping to the seam's ContainerSpec).
"""

from __future__ import annotations


class ComposeError(ValueError):
    """A compose file we cannot use; the message is one line naming the file and the key."""
