"""Which builder a docker-engine build uses, and why (said in the build output).

- "classic": the daemon's classic builder (`POST /build`), when the daemon's default builder is
  classic and the Dockerfile needs nothing only BuildKit has; it reports every step's image.
- "buildkit": the daemon's BuildKit (`POST /build?version=2`), when the daemon says BuildKit is
  its default builder (`Builder-Version: 2` in `/_ping`, Docker 23 and later), or when the
  Dockerfile needs BuildKit and the daemon's built-in Dockerfile frontend has what it needs
  (heredocs: Docker 23, API 1.42, and later).
- "native": isobox's own builder on the native engine here, the image then loaded into the
  daemon (`POST /images/load`): a Dockerfile neither daemon builder can build (heredocs on
  Docker 20.10, on Podman's Buildah before 1.33), so the result is the native engine's.

`ISOBOX_DOCKER_BUILDER=classic|buildkit|native` forces one. Pure logic: no request here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pytest_isobox.engine import BuildError

BUILDERS = ("classic", "buildkit", "native")
_HEREDOC_API = (1, 42)  # Docker 23.0: BuildKit 0.11, its built-in frontend has heredocs


@dataclass(frozen=True)
class DaemonBuilders:
    """What the daemon's build API offers."""

    api_version: str
    podman: bool
    default_builder: str  # "2" when BuildKit is the daemon's default, else "1" or ""
    server: str = "Docker"  # "Docker 20.10.24", for the build output

    @property
    def buildkit_heredocs(self) -> bool:
        version = tuple(int(p) for p in self.api_version.split(".") if p.isdigit())
        return not self.podman and version >= _HEREDOC_API


@dataclass(frozen=True)
class Choice:
    builder: str
    why: str

    def note(self) -> str:
        """The build output's first line: which builder and why."""
        where = {"classic": "the daemon's classic builder",
                 "buildkit": "the daemon's BuildKit",
                 "native": "isobox's builder here, the image then loaded into the daemon"}
        return f"building with {where[self.builder]} ({self.why})"


def buildkit_features(text: str, filename: str = "Dockerfile") -> list[str]:
    """What of the Dockerfile only BuildKit builds, e.g. ["heredocs (line 3)"]; [] if none.
    A Dockerfile we cannot parse needs nothing: the daemon's builder reports its error."""
    from pytest_isobox.builder.dockerfile import parse

    try:
        instructions = parse(text, filename).instructions
    except BuildError:
        return []
    lines = [str(ins.start_line) for ins in instructions
             if ins.heredocs or (ins.next is not None and ins.next.heredocs)]
    if not lines:
        return []
    return [f"heredocs (line{'s' if len(lines) > 1 else ''} {', '.join(lines)})"]


def choose(daemon: DaemonBuilders, needs: list[str],
           env: Mapping[str, str]) -> Choice:
    """The builder for a Dockerfile needing `needs` (buildkit_features) on `daemon`."""
    forced = env.get("ISOBOX_DOCKER_BUILDER", "").strip()
    if forced:
        if forced not in BUILDERS:
            raise BuildError(f"ISOBOX_DOCKER_BUILDER={forced!r}: expected one of "
                             f"{', '.join(BUILDERS)}")
        return Choice(forced, "ISOBOX_DOCKER_BUILDER")
    if needs:
        what = ", ".join(needs)
        if daemon.buildkit_heredocs:
            return Choice("buildkit", f"the Dockerfile has {what}")
        lacking = ("Podman's builder" if daemon.podman
                   else f"the BuildKit of {daemon.server} (API {daemon.api_version})")
        return Choice("native", f"the Dockerfile has {what}, which {lacking} cannot build")
    if daemon.default_builder == "2" and not daemon.podman:
        return Choice("buildkit", "the daemon's default builder")
    return Choice("classic", "the daemon's default builder")
