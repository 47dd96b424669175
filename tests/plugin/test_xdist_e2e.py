"""Under pytest-xdist: each worker's containers are its own; shared ones start once per run."""

from __future__ import annotations

from tests.plugin.conftest import base_conftest, gone


def test_shared_container_starts_once_for_all_workers(project, busybox_rootfs, engine,
                                                      tmp_path):
    seen = tmp_path / "seen"
    project.makeconftest(base_conftest(busybox_rootfs, f"""
        db = container(image="{{base}}", command="httpd -f -p 80 -h /etc", ports=["80/tcp"],
                       shared=True)
        own = container(image="{{base}}", command="sleep 300", init=True)

        def pytest_isobox_container_created(container):
            with open({str(tmp_path / "created")!r}, "a") as f:
                f.write(container.fixture + "\\n")
    """))
    project.makepyfile(f"""
        import os

        def test_uses_both(db, own):
            worker = os.environ["PYTEST_XDIST_WORKER"]
            assert worker in own.name and worker not in db.name
            host, port = db.get_addr(80)
            with open({str(seen)!r}, "a") as f:
                f.write(f"{{worker}} {{db.id}} {{own.id}} {{own.name}}\\n")
    """)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist=each")
    result.assert_outcomes(passed=2)
    rows = [line.split() for line in seen.read_text().splitlines()]
    assert sorted(r[0] for r in rows) == ["gw0", "gw1"]
    assert len({r[1] for r in rows}) == 1, "one shared container for both workers"
    assert len({r[2] for r in rows}) == 2 and len({r[3] for r in rows}) == 2
    # each worker attached to db (created or attached) and made its own `own`
    assert sorted((tmp_path / "created").read_text().split()) == ["db", "db", "own", "own"]
    result.stdout.fnmatch_lines(["*= isobox =*", "containers:"])
    for row in rows:
        assert gone(engine, row[1]) and gone(engine, row[2])
