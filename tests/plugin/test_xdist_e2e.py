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


def test_shared_container_on_a_network_fixture_shares_the_network(project, busybox_rootfs,
                                                                  engine, tmp_path):
    """The network a shared container is on is made once for the run, like the container:
    every worker's clients join it and reach the container by name; it goes after it."""
    seen = tmp_path / "seen"
    project.makeconftest(base_conftest(busybox_rootfs, """
        app_net = network()
        kv = container(image="{base}", network="{app_net}", shared=True,
                       command=["sh", "-c", "echo value-42 > /tmp/key; "
                                            "exec httpd -f -p 80 -h /tmp"],
                       ready=wait.command(["wget", "-qO-", "http://127.0.0.1/key"]))
        client = container(image="{base}", network="{app_net}", command="sleep 300",
                           init=True, scope="function")
    """))
    project.makepyfile(f"""
        import os

        import pytest

        @pytest.mark.parametrize("n", [1, 2])
        def test_client_reaches_kv_by_name(kv, client, app_net, n):
            for host in ("kv", kv.name):
                code, out = client.exec(["wget", "-qO-", f"http://{{host}}/key"])
                assert (code, out) == (0, "value-42\\n"), host
            with open({str(seen)!r}, "a") as f:
                f.write(f"{{os.environ['PYTEST_XDIST_WORKER']}} {{kv.id}} {{app_net.name}} "
                        f"{{client.id}}\\n")
    """)
    networks_before = {n.name for n in engine.networks()}
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist=each")
    result.assert_outcomes(passed=4)
    assert "ConflictError" not in result.stdout.str() + result.stderr.str()
    rows = [line.split() for line in seen.read_text().splitlines()]
    assert sorted({r[0] for r in rows}) == ["gw0", "gw1"]
    assert len({r[1] for r in rows}) == 1, "one kv for the run"
    assert len({r[2] for r in rows}) == 1, "one network for the run"
    assert len({r[3] for r in rows}) == 4, "a client per test"
    for row in rows:
        assert gone(engine, row[1]) and gone(engine, row[3])
    assert {n.name for n in engine.networks()} == networks_before
