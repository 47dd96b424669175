"""The daemon's BuildKit (`POST /build?version=2`): its progress stream read back as steps.

With `version=2` and no session, the daemon serves the request body (our context tar) to
BuildKit as the build context. Progress comes as `{"id": "moby.buildkit.trace", "aux":
<base64 protobuf StatusResponse>}` messages: vertexes (digest 1, name 3, cached 4, started 5,
completed 6, error 7) and logs (vertex 1, msg 4); the image as `{"id": "moby.image.id",
"aux": {"ID": ...}}`. A vertex named `[stage i/n] INSTRUCTION` is a Dockerfile step: it is
reported once completed, with BuildKit's numbering. Only the few protobuf fields used are
decoded (wire types varint, 64-bit, length-delimited, 32-bit).
"""

from __future__ import annotations

import base64
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pytest_isobox.engine import BuildError, BuildStep

_STEP_NAME = re.compile(r"^\[(?:[^\]]* )?(\d+)/(\d+)\] (.*)$", re.DOTALL)
_LAST_LINES = 20


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one protobuf message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            size, pos = _varint(data, pos)
            yield number, data[pos:pos + size]
            pos += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            yield number, data[pos:pos + width]
            pos += width
        else:
            raise ValueError(f"protobuf wire type {wire} at byte {pos}")


def _seconds(timestamp: bytes) -> float:
    parts = dict(fields(timestamp))
    return int(parts.get(1, 0)) + int(parts.get(2, 0)) / 1e9  # type: ignore[arg-type]


@dataclass
class _Vertex:
    name: str = ""
    cached: bool = False
    started: float | None = None
    completed: float | None = None
    error: str = ""
    output: list[str] = field(default_factory=list)
    reported: bool = False


class BuildKitProgress:
    """Reads the BuildKit build's messages; `on_step` hears of each finished Dockerfile step,
    `on_output` of a step's output as it comes."""

    def __init__(self, dockerfile: str, on_step: Callable[[BuildStep], None] | None,
                 on_output: Callable[[BuildStep, str], None] | None = None) -> None:
        self._dockerfile = dockerfile
        self._on_step = on_step
        self._on_output = on_output
        self._vertices: dict[str, _Vertex] = {}
        self.last_lines: deque[str] = deque(maxlen=_LAST_LINES)
        self.image_id: str | None = None
        self.error: str | None = None
        self.failed: str | None = None  # the failing step's name

    def feed(self, message: dict) -> None:
        if "error" in message or "errorDetail" in message:
            detail = message.get("errorDetail") or {}
            self.error = detail.get("message") or message.get("error") or "build failed"
        aux = message.get("aux")
        if message.get("id") == "moby.image.id" and isinstance(aux, dict):
            self.image_id = aux.get("ID") or self.image_id
        elif message.get("id") == "moby.buildkit.trace" and isinstance(aux, str):
            self._status(base64.b64decode(aux))

    def _status(self, data: bytes) -> None:
        for number, value in fields(data):
            if number == 1 and isinstance(value, bytes):
                self._vertex(value)
            elif number == 3 and isinstance(value, bytes):
                self._log(value)

    def _vertex(self, data: bytes) -> None:
        parts: dict[int, int | bytes] = {}
        for number, value in fields(data):
            parts[number] = value
        digest = bytes(parts.get(1, b"")).decode()  # type: ignore[arg-type]
        vertex = self._vertices.setdefault(digest, _Vertex())
        if 3 in parts:
            vertex.name = bytes(parts[3]).decode("utf-8", "replace")  # type: ignore[arg-type]
        vertex.cached = bool(parts.get(4, vertex.cached))
        if 5 in parts:
            vertex.started = _seconds(parts[5])  # type: ignore[arg-type]
        if 6 in parts:
            vertex.completed = _seconds(parts[6])  # type: ignore[arg-type]
        if 7 in parts:
            vertex.error = bytes(parts[7]).decode("utf-8", "replace")  # type: ignore[arg-type]
            self.failed = vertex.name
        if vertex.completed is not None and not vertex.error and not vertex.reported:
            self._report(vertex)

    def _log(self, data: bytes) -> None:
        parts = dict(fields(data))
        vertex = self._vertices.setdefault(bytes(parts.get(1, b"")).decode(),  # type: ignore
                                           _Vertex())
        text = bytes(parts.get(4, b"")).decode("utf-8", "replace")  # type: ignore[arg-type]
        vertex.output.append(text)
        for line in text.splitlines():
            self.last_lines.append(line)
        step = self._step_of(vertex)
        if step is not None and self._on_output is not None:
            self._on_output(step, text)

    def _step_of(self, vertex: _Vertex) -> BuildStep | None:
        match = _STEP_NAME.match(vertex.name)
        if match is None:
            return None
        seconds = 0.0
        if vertex.started is not None and vertex.completed is not None:
            seconds = max(0.0, vertex.completed - vertex.started)
        return BuildStep(index=int(match[1]), total=int(match[2]), instruction=match[3],
                         cached=vertex.cached, seconds=seconds, image_id=None,
                         output="".join(vertex.output).rstrip("\n"))

    def _report(self, vertex: _Vertex) -> None:
        step = self._step_of(vertex)
        if step is None:
            return
        vertex.reported = True
        if self._on_step is not None:
            self._on_step(step)

    def result(self) -> str:
        """The built image's id, or the BuildError naming the failing step and its last lines."""
        if self.error is None and self.image_id:
            return self.image_id
        where = f"{self._dockerfile}: "
        if self.failed:
            where += f"{self.failed} failed: "
        tail = "\n".join(self.last_lines)
        message = f"{where}{self.error or 'the daemon reported no image id'}"
        raise BuildError(message + (f"\nlast output:\n{tail}" if tail else ""))
