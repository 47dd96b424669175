"""The fixture factories, end to end: real test files run through the plugin on each engine."""

from __future__ import annotations

import re
import textwrap
from xml.etree import ElementTree

from tests.plugin.conftest import base_conftest, gone


def test_services_on_a_network_with_templating(project, busybox_rootfs, engine, tmp_path):
    project.makeconftest(textwrap.dedent(f"""
        from pytest_isobox import container, image, network, wait

        base = image(rootfs={str(busybox_rootfs)!r}, tag="isobox-test/plugin-busybox:latest")
        app_net = network()
        backend = container(
            image="{{base}}", network="{{app_net}}", mem_limit="64m", cpus=0.5, pids_limit=32,
            command=["sh", "-c", "echo backend up; mkdir -p /www; echo pong > /www/ping; "
                     "exec httpd -f -p 7000 -h /www"],
            ready=wait.all_of(wait.tcp(7000), wait.log("backend up")))
        web = container(
            image="{{base}}", network="{{app_net}}", ports=["8000/tcp"],
            environment={{"BACKEND": "{{backend.name}}", "BACKEND_IP": "{{backend.ip}}",
                          "WORKER": "{{worker_id}}"}},
            command=["httpd", "-f", "-p", "8000", "-h", "/etc"],
            ready=wait.http(8000, "/passwd", body="root"), scope="function")
    """))
    project.makepyfile(test_it=textwrap.dedent(f"""
        import urllib.request

        def test_web(web, backend, tmp_path):
            host, port = web.get_addr("8000/tcp")
            assert host == "127.0.0.1"
            body = urllib.request.urlopen(f"http://{{host}}:{{port}}/passwd").read()
            assert body.startswith(b"root:")
            code, env = web.exec("env")
            assert code == 0
            assert f"BACKEND={{backend.name}}" in env and "WORKER=master" in env
            assert f"BACKEND_IP={{backend.ip}}" in env
            # by name and by fixture name (an alias) on the private network
            for peer in (backend.name, "backend"):
                code, out = web.exec(["wget", "-qO-", f"http://{{peer}}:7000/ping"])
                assert (code, out) == (0, "pong\\n"), out
            assert "backend up" in backend.logs()
            assert backend.status == "running" and backend.exit_code in (None, 0)
            assert backend.ips and backend.ip in backend.ips.values()
            stats = backend.stats()
            assert stats.memory_current > 0
            src = tmp_path / "hello.txt"
            src.write_text("hello")
            web.copy_to(src, "/tmp/hello.txt")
            assert web.exec("cat /tmp/hello.txt") == (0, "hello")
            back = web.copy_from("/tmp/hello.txt", tmp_path / "back.txt")
            assert back.read_text() == "hello"
            open({str(tmp_path / "ids")!r}, "a").write(web.id + " " + backend.id + "\\n")
    """))
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*= isobox =*", "containers:", "*fixture*name*image*build*start*ready*peak mem*cpu*", "*backend*isobox-backend-*", "*web*"])
    for cid in (tmp_path / "ids").read_text().split():
        assert gone(engine, cid)


def test_function_scope_gives_each_test_its_own_container(project, busybox_rootfs):
    project.makeconftest(base_conftest(busybox_rootfs, """
        box = container(image="{base}", command="sleep 300", scope="function", init=True)
    """))
    project.makepyfile("""
        ids = []
        def test_one(box):
            ids.append(box.id)
        def test_two(box):
            ids.append(box.id)
            assert ids[0] != ids[1]
    """)
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_failing_test_report_has_each_container_log(project, busybox_rootfs):
    project.makeconftest(base_conftest(busybox_rootfs, """
        chatty = container(image="{base}", command=["sh", "-c", "echo line-one; echo to-stderr >&2; exec sleep 300"],
                           init=True, ready=wait.log("to-stderr"))
    """))
    project.makepyfile("""
        def test_fails(chatty):
            assert chatty.name == "something else"
        def test_passes(chatty):
            pass
    """)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*_ test_fails _*",
        "*- isobox container chatty (isobox-chatty-*) logs -*",
    ])
    section = result.stdout.str().split(" logs -")[1].split("= isobox =")[0]
    assert "line-one" in section and "to-stderr" in section  # streams interleave freely


def test_container_logs_of_a_failing_test_reach_junit_xml(project, busybox_rootfs, tmp_path):
    project.makeconftest(base_conftest(busybox_rootfs, """
        chatty = container(image="{base}", init=True, ready=wait.log("ready-now"),
                           command=["sh", "-c", "echo hello-from-chatty; echo ready-now; "
                                                "exec sleep 300"])
    """))
    project.makepyfile("""
        def test_fails(chatty):
            assert chatty.name == "something else"
        def test_passes(chatty):
            pass
    """)
    xml_path = tmp_path / "junit.xml"
    result = project.runpytest("-p", "no:cacheprovider", f"--junitxml={xml_path}")
    result.assert_outcomes(passed=1, failed=1)
    cases = {case.get("name"): case for case in ElementTree.parse(xml_path).iter("testcase")}
    failure = cases["test_fails"].find("failure")
    assert failure is not None
    assert re.search(r"isobox container chatty \(isobox-chatty-\S+\) logs", failure.text)
    assert "hello-from-chatty" in failure.text
    assert "hello-from-chatty" not in ElementTree.tostring(cases["test_passes"], "unicode")


def test_exit_while_waiting_fails_at_once_with_code_and_logs(project, busybox_rootfs):
    project.makeconftest(base_conftest(busybox_rootfs, """
        broken = container(image="{base}", command=["sh", "-c", "echo cannot open config; exit 3"],
                           ports=["80/tcp"], timeout=600)
    """))
    project.makepyfile("def test_it(broken):\n    pass\n")
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        ("*ContainerExited: container isobox-broken-* exited with code 3 while waiting for "
         "published ports 80/tcp to accept connections"),
        "*last 20 log lines of isobox-broken-*",
        "*cannot open config",
    ])
    assert result.duration < 60


def test_timeout_says_what_it_waited_for(project, busybox_rootfs):
    project.makeconftest(base_conftest(busybox_rootfs, """
        slow = container(image="{base}", command="sh -c 'echo starting; exec sleep 300'",
                         init=True, ready=wait.http(8080, "/health"), timeout=0.5)
    """))
    project.makepyfile("def test_it(slow):\n    pass\n")
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        ("*ReadinessTimeout: container isobox-slow-* not ready after 0.5 s: waited for GET "
         "http://*:8080/health to answer status (200,); last attempt: *"),
        "*starting",
    ])


def test_build_from_dockerfile_is_cached_on_the_second_run(project, busybox_rootfs):
    ctx = project.mkdir("svc")
    (ctx / "Dockerfile").write_text(textwrap.dedent("""
        ARG BASE
        FROM ${BASE}
        RUN mkdir /data && echo "hello world" > /data/hello.txt
        COPY greeting.txt /data/greeting.txt
        EXPOSE 80
        CMD ["cat", "/data/hello.txt", "/data/greeting.txt"]
    """))
    (ctx / "greeting.txt").write_text("hi there\n")
    project.makeconftest(base_conftest(busybox_rootfs, """
        svc_image = image(path="svc", buildargs={"BASE": "{base}"})
        steps = []

        def pytest_isobox_build_step(step):
            steps.append(step)
    """))
    project.makepyfile("""
        def test_it(isobox, svc_image):
            box = isobox.run(svc_image)
            assert box.wait(timeout=30) == 0
            assert box.logs() == "hello world\\nhi there\\n"
    """)
    first = project.runpytest("-p", "no:cacheprovider", "-v")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["isobox build svc: step */* RUN mkdir /data*"])
    second = project.runpytest("-p", "no:cacheprovider", "-v")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["isobox build svc: step */* RUN mkdir /data* CACHED",
                                 "isobox build svc: step */* COPY greeting.txt* CACHED",
                                 "images:"])
    assert re.search(r"^  svc +\w+ +\S+ +(\d+)/\1 cached$", second.stdout.str(), re.MULTILINE)


def test_hooks_follow_a_container_life(project, busybox_rootfs):
    project.makeconftest(base_conftest(busybox_rootfs, """
        box = container(image="{base}", command="sleep 300", init=True, scope="function")

        def record(*event):
            with open("events.txt", "a") as f:
                f.write(" ".join(map(str, event)) + "\\n")

        def pytest_isobox_container_created(container):
            record("created", container.fixture)

        def pytest_isobox_container_ready(container, seconds):
            record("ready", container.fixture, seconds >= 0)

        def pytest_isobox_container_removed(container):
            record("removed", container.fixture)
    """))
    project.makepyfile("""
        def test_one(box):
            pass

        def test_two(box):
            pass
    """)
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    assert (project.path / "events.txt").read_text().splitlines() == [
        "created box", "ready box True", "removed box"] * 2


def test_isobox_fixture_removes_what_it_made(project, busybox_rootfs, engine, tmp_path):
    project.makepyfile(f"""
        def test_run(isobox, base):
            done = isobox.run(base, ["sh", "-c", "echo hi; exit 4"])
            assert done.wait(timeout=30) == 4
            assert done.logs() == "hi\\n"
            net = isobox.network()
            vol = isobox.volume()
            svc = isobox.run(base, "httpd -f -p 80 -h /etc", ports=["80/tcp"],
                             networks=[net.name], mounts=[f"{{vol.name}}:/data", "tmpfs:/scratch"])
            assert svc.exec("sh -c 'echo x > /data/f && cat /data/f'") == (0, "x\\n")
            open({str(tmp_path / "ids")!r}, "w").write(done.id + " " + svc.id)
    """)
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    for cid in (tmp_path / "ids").read_text().split():
        assert gone(engine, cid)
