"""`isobox events`: what the engine records as containers, images, networks and volumes
change, as `docker events` prints it (--since, --until, --filter, --format)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from pytest_isobox.engine import Engine, EngineEvent, require


def _line(event: EngineEvent) -> str:
    """Docker's default line: time, type, action, id, (attributes sorted)."""
    stamp = datetime.fromtimestamp(event.time, UTC)
    nanos = round(event.time * 1e9) % 1_000_000_000
    attributes = ", ".join(f"{k}={v}" for k, v in sorted(event.attributes.items()))
    return (f"{stamp:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z {event.type} {event.action} "
            f"{event.id}" + (f" ({attributes})" if attributes else ""))


def cmd_events(engine: Engine, args: argparse.Namespace) -> int:
    from pytest_isobox.cli.output import compile_format
    from pytest_isobox.engine import events as engine_events

    now = time.time()
    since = engine_events.parse_time(args.since, now) if args.since else None
    until = engine_events.parse_time(args.until, now) if args.until else None
    filters = engine_events.parse_filter_args(args.filter or [])
    template = compile_format(args.format)
    require(engine, "events", "report events")
    stream = engine.events(since=since, until=until, follow=until is None or until > now)
    try:
        for event in stream:
            if event is None or not engine_events.matches(event, filters):
                continue
            if template is None:
                print(_line(event), flush=True)
            else:
                print(template.render(engine_events.docker_document(event)), flush=True)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        stream.close()
        sys.stdout.flush()
    return 0
