"""The terminal summary and log sections, from plain records (as xdist workers send them)."""

from __future__ import annotations

from pytest_isobox.plugin.reports import (
    LOG_SECTION_LINES,
    ContainerRecord,
    ImageRecord,
    RunReport,
    log_section,
    summary_lines,
)


def test_summary_lists_images_once_and_each_container():
    worker = RunReport(
        containers=[ContainerRecord("db", "isobox-db-1-gw0", "c1", "fixtures/db", "gw0", 1.5,
                                    0.012, 0.2, 3 * 1024 * 1024, 0.04, kept=True,
                                    exec_hint="kept isobox-db-1-gw0: isobox exec -it c1 sh")],
        images=[ImageRecord("fixtures/db", "sha256:abcdef0123456789", 1.5, 4, 4, "gw0")],
        swept=["container isobox-db-0-gw0"])
    report = RunReport()
    report.merge(worker.to_dict())
    report.merge({**worker.to_dict(), "containers": []})
    lines = summary_lines(report)
    assert lines[0] == "cleaned up after earlier runs that died: container isobox-db-0-gw0"
    assert "  fixtures/db  abcdef012345  1.50s  4/4 cached  in 2 workers" in lines
    row = next(line for line in lines if line.startswith("  db "))
    assert row.split() == ["db", "isobox-db-1-gw0", "fixtures/db", "1.50s", "12ms", "200ms",
                           "3.0", "MiB", "40ms"]
    assert lines[-1] == "  db: kept isobox-db-1-gw0: isobox exec -it c1 sh"


def test_log_section_keeps_the_last_lines():
    title, text = log_section("db", "isobox-db", "".join(f"{i}\n" for i in range(500)))
    assert title == "isobox container db (isobox-db) logs"
    assert text.splitlines()[0] == f"(last {LOG_SECTION_LINES} of 500 lines)"
    assert text.splitlines()[-1] == "499"
    assert log_section("db", "x", "")[1] == "(no output)"
