"""What the run tells the user: per-container records, log sections, the terminal summary.

Records are plain data so xdist workers can send theirs to the controller (`workeroutput`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_isobox.engine import IsoboxError

LOG_SECTION_LINES = 200


@dataclass
class ContainerRecord:
    """One container's life in this run, for the summary."""

    fixture: str
    name: str
    id: str
    image: str
    worker: str = "master"
    build_seconds: float | None = None
    start_seconds: float | None = None
    ready_seconds: float | None = None
    peak_memory: int | None = None
    cpu_seconds: float | None = None
    how: str = "started"  # started, shared, reused (from an earlier run), reusable (left for
    #                       the next run)
    kept: bool = False
    exec_hint: str = ""
    limits: str = ""  # rootless: which limits were applied and which skipped (else empty)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ImageRecord:
    source: str
    id: str
    seconds: float
    steps: int
    cached_steps: int
    worker: str = "master"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunReport:
    """Everything one process (or, on the controller, every worker) has to report."""

    containers: list[ContainerRecord] = field(default_factory=list)
    images: list[ImageRecord] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    unavailable: str | None = None

    def to_dict(self) -> dict:
        return {"containers": [r.to_dict() for r in self.containers],
                "images": [r.to_dict() for r in self.images],
                "swept": list(self.swept), "unavailable": self.unavailable}

    def merge(self, data: dict) -> None:
        self.containers += [ContainerRecord(**r) for r in data.get("containers", [])]
        self.images += [ImageRecord(**r) for r in data.get("images", [])]
        self.swept += [s for s in data.get("swept", []) if s not in self.swept]
        self.unavailable = self.unavailable or data.get("unavailable")

    @property
    def empty(self) -> bool:
        return not (self.containers or self.images or self.swept or self.unavailable)


def summary_lines(report: RunReport) -> list[str]:
    """The terminal summary: cleanup done, images, containers with times, memory and CPU."""
    lines: list[str] = []
    if report.swept:
        lines.append(f"cleaned up after earlier runs that died: {', '.join(report.swept)}")
    if report.unavailable:
        lines.append(f"engine unavailable, container tests skipped: {report.unavailable}")
    if report.images:
        lines.append("images:")
        by_image: dict[tuple[str, str], list[ImageRecord]] = {}
        for image in report.images:  # under xdist each worker builds (or finds) each image
            by_image.setdefault((image.source, image.id), []).append(image)
        lines += _table(
            ["source", "id", "build", "steps", ""],
            [[i.source, _short(i.id), _secs(max(r.seconds for r in same)),
              f"{i.cached_steps}/{i.steps} cached" if i.steps else "-",
              f"in {len(same)} workers" if len(same) > 1 else ""]
             for same in by_image.values() for i in same[:1]])
    if report.containers:
        lines.append("containers:")
        lines += _table(
            ["fixture", "name", "image", "build", "start", "ready", "peak mem", "cpu", ""],
            [[c.fixture, c.name, c.image, _secs(c.build_seconds), _secs(c.start_seconds),
              _secs(c.ready_seconds), _bytes(c.peak_memory), _secs(c.cpu_seconds),
              c.how if c.how != "started" else ""]
             for c in report.containers])
    if any("skipped" in c.limits for c in report.containers):
        lines.append("limits (rootless, --isobox-limits=best-effort):")
        lines += [f"  {c.fixture} ({c.name}): {c.limits}" for c in report.containers
                  if c.limits]
    kept = [c for c in report.containers if c.kept]
    if kept:
        lines.append("kept containers (remove with `isobox rm -f <id>`):")
        lines += [f"  {c.fixture}: {c.exec_hint}" for c in kept]
    return lines


def limits_note(engine: Any, container_id: str) -> str:
    """The native engine's line on which limits a rootless container got ("" otherwise: no
    inspect asked of an engine that is not rootless, a round trip per container on docker)."""
    if not getattr(engine, "rootless", False):
        return ""
    try:
        return str(engine.inspect(container_id).get("Isobox", {}).get("Limits", ""))
    except IsoboxError:
        return ""


def log_section(fixture: str, name: str, logs: str) -> tuple[str, str]:
    """A report section (title, text) with a container's last log lines."""
    lines = logs.splitlines()
    cut = len(lines) > LOG_SECTION_LINES
    text = "\n".join(lines[-LOG_SECTION_LINES:]) or "(no output)"
    if cut:
        text = f"(last {LOG_SECTION_LINES} of {len(lines)} lines)\n{text}"
    return f"isobox container {fixture} ({name}) logs", text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  " + "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*map(str, r)).rstrip() for r in rows]


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


def _bytes(value: int | None) -> str:
    if not value:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024  # type: ignore[assignment]
    return "-"


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]
