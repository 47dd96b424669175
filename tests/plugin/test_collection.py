"""Factories make real fixtures: pytest knows every reference at collection, with no engine."""

from __future__ import annotations


def test_references_are_fixture_dependencies_at_collection(pytester):
    pytester.makeconftest("""
        from pytest_isobox import container, image, network, volume

        app_net = network()
        data = volume()
        db_image = image(path="db")
        db = container(image="{db_image}", network="{app_net}", mounts=["{data}:/data"])
        web = container(image="{db_image}", network="{app_net}", scope="function",
                        environment={"DB": "{db.name}", "WORKER": "{worker_id}"})
    """)
    pytester.makepyfile("def test_web(web):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--setup-plan")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "SETUP    S isobox_engine",
        "SETUP    S app_net (fixtures used: isobox_engine)",
        "SETUP    S data (fixtures used: isobox_engine)",
        "SETUP    S db_image (fixtures used: isobox_engine)",
        "SETUP    S db (fixtures used: app_net, data, db_image, isobox_engine)",
        "        SETUP    F web (fixtures used: app_net, db, db_image, isobox_engine)",
        "*test_web (fixtures used: *web*)",
    ])


def test_scope_mismatch_is_pytests_own_error(pytester):
    pytester.makeconftest("""
        from pytest_isobox import container, network

        net = network(scope="function")
        db = container(image="x", network="{net}")
    """)
    pytester.makepyfile("def test_db(db):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--setup-plan")
    result.stdout.fnmatch_lines(["*ScopeMismatch*"])
