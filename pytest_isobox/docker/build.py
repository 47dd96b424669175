"""What a Docker build needs from the client: the context tar, and the progress read back.

The daemon never sees ignored files: `context_tar` applies `.dockerignore` (or
`<Dockerfile>.dockerignore`) itself, as Docker's CLI does, and always sends the Dockerfile.
`BuildProgress` turns the classic builder's stream ("Step N/M : INSTR", " ---> Using cache",
" ---> <id>"; Podman's Buildah likewise) into `BuildStep`s, and its errors into one
`BuildError` naming the step.
"""

from __future__ import annotations

import os
import re
import secrets
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

from pytest_isobox.builder.dockerignore import DockerIgnore, context_files, ignore_file_for
from pytest_isobox.engine import BuildError, BuildStep

_LAST_LINES = 20


def context_tar(context: Path, dockerfile: str | None, *,
                tar_format: int = tarfile.PAX_FORMAT) -> tuple[IO[bytes], int, str]:
    """A temporary tar of the context minus ignored files; returns (file, size, dockerfile name).

    The dockerfile name is relative to the context; a Dockerfile outside the context is added
    under a random name, as Docker's CLI does. BuildKit's context from a request body wants
    `tarfile.GNU_FORMAT`: it takes a tar opening with a PAX header for a Dockerfile.
    """
    if not context.is_dir():
        raise BuildError(f"build context {context} is not a directory")
    dockerfile_path = (context / (dockerfile or "Dockerfile")) if not (
        dockerfile and os.path.isabs(dockerfile)) else Path(dockerfile)
    if not dockerfile_path.is_file():
        raise BuildError(f"cannot find the Dockerfile {dockerfile_path}")
    ignore = DockerIgnore.from_file(ignore_file_for(context, dockerfile_path))
    try:
        name = dockerfile_path.resolve().relative_to(context.resolve()).as_posix()
        outside = False
    except ValueError:
        name, outside = f".dockerfile.{secrets.token_hex(10)}", True
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
    entries = [(context / rel, rel) for rel in context_files(context, ignore)]
    included = {rel for _, rel in entries}
    for must in ([] if outside else [name]) + [".dockerignore"]:
        if must not in included and (context / must).is_file():
            entries.append((context / must, must))
    if outside:
        entries.append((dockerfile_path, name))
    try:
        with tarfile.open(fileobj=spool, mode="w", format=tar_format) as tar:
            for path, arcname in entries:
                tar.add(path, arcname=arcname, recursive=False, filter=_owned_by_root)
    except OSError as exc:
        spool.close()
        raise BuildError(f"cannot read {exc.filename or context} for the build context: "
                         f"{exc.strerror or exc}") from None
    size = spool.tell()
    spool.seek(0)
    return spool, size, name


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Context files belong to root in the image, as with Docker's CLI."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# Docker's classic builder, then Podman's Buildah ("STEP 2/4: RUN x", "--> Using cache <id>",
# "--> <id>", "COMMIT <tag>", the full id alone on the last line; a FROM step gets no id).
_STEP = re.compile(r"^(?:Step (\d+)/(\d+) : |STEP (\d+)/(\d+): )(.*)$")
_IMAGE_ID = re.compile(r"^ ?---?> ([0-9a-f]{11,64})$")  # Buildah's short ids have 11
_CACHED = re.compile(r"^(?: ---> Using cache|--> Using cache [0-9a-f]{64})$")
_NOISE = re.compile(r"^(?:COMMIT .*|[0-9a-f]{64})$")
_STDERR_COLOUR = re.compile(r"\x1b\[(?:91|0)m")  # the daemon paints RUN's stderr red


class BuildProgress:
    """Reads the daemon's build messages in order; `on_step` hears of each finished step."""

    def __init__(self, dockerfile: str, on_step: Callable[[BuildStep], None] | None,
                 resolve_id: Callable[[str], str],
                 on_output: Callable[[BuildStep, str], None] | None = None) -> None:
        self._dockerfile = dockerfile
        self._on_step = on_step
        self._on_output = on_output
        self._resolve_id = resolve_id
        self._partial = ""
        self._step: tuple[int, int, str] | None = None
        self._started = time.monotonic()
        self._cached = False
        self._output: list[str] = []
        self.last_lines: deque[str] = deque(maxlen=_LAST_LINES)
        self.image_id: str | None = None
        self.error: str | None = None

    def feed(self, message: dict) -> None:
        if "error" in message or "errorDetail" in message:
            detail = message.get("errorDetail") or {}
            self.error = detail.get("message") or message.get("error") or "build failed"
        aux = message.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            self.image_id = aux["ID"]
        if "stream" in message:
            self._partial += _STDERR_COLOUR.sub("", message["stream"])
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                self._line(line.rstrip("\r"))

    def _line(self, line: str) -> None:
        step = _STEP.match(line)
        if step:
            if self._step is not None and step[3]:  # Buildah: a FROM step ends with no id
                self._finish(None)  # (the classic builder's global ARG: no step, as before)
            self._step = (int(step[1] or step[3]), int(step[2] or step[4]), step[5])
            self._started, self._cached, self._output = time.monotonic(), False, []
            return
        if _CACHED.match(line):
            self._cached = True
            return
        done = _IMAGE_ID.match(line)
        if done and self._step is not None:
            self._finish(done[1])
            return
        if _NOISE.match(line):
            return
        if line.startswith((" ---> ", "Removing intermediate container ", "Successfully ")):
            if line.startswith("Successfully built ") and self.image_id is None:
                self.image_id = line.split()[-1]
            return
        self._output.append(line)
        self.last_lines.append(line)
        if self._on_output is not None and self._step is not None:
            index, total, instruction = self._step
            self._on_output(BuildStep(index=index, total=total, instruction=instruction,
                                      cached=False, seconds=0.0, image_id=None), line + "\n")

    def _finish(self, short_id: str | None) -> None:
        index, total, instruction = self._step  # type: ignore[misc]
        self._step = None
        if self._on_step is not None:
            self._on_step(BuildStep(
                index=index, total=total, instruction=instruction, cached=self._cached,
                seconds=time.monotonic() - self._started,
                image_id=self._resolve_id(short_id) if short_id else None,
                output="\n".join(self._output),
            ))

    def result(self) -> str:
        """The built image's id, or the BuildError naming the failing step and its last lines."""
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        if self.error is None and self.image_id:
            return self.image_id
        where = f"{self._dockerfile}: "
        if self._step is not None:
            where += f"step {self._step[0]}/{self._step[1]} ({self._step[2]}) failed: "
        tail = "\n".join(self.last_lines)
        message = f"{where}{self.error or 'the daemon reported no image id'}"
        raise BuildError(message + (f"\nlast output:\n{tail}" if tail else ""))
