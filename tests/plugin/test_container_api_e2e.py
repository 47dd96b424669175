"""The Container handle's lifecycle and the healthcheck strategy, end to end on each engine."""

from __future__ import annotations

import textwrap

from tests.plugin.conftest import base_conftest


def test_stop_restart_and_exit_codes(project, busybox_rootfs, engine_kind):
    project.makeconftest(base_conftest(busybox_rootfs, """
        web = container(image="{base}", command="httpd -f -p 80 -h /etc", ports=["80/tcp"],
                        scope="function")
        data = volume()
        writer = container(image="{base}", command="sh -c 'echo saved > /data/f; sleep 300'",
                           mounts=["{data}:/data", "./shared:/shared:ro"], init=True,
                           ready=wait.command("test -f /data/f"), scope="function")
    """))
    (project.path / "shared").mkdir()
    (project.path / "shared" / "note.txt").write_text("from the host\n")
    project.makepyfile("""
        import urllib.request

        def fetch(c):
            host, port = c.get_addr(80)
            return urllib.request.urlopen(f"http://{host}:{port}/passwd", timeout=5).read()

        def test_restart(web):
            assert fetch(web).startswith(b"root:")
            web.stop(timeout=2)
            assert web.status == "exited" and web.exit_code is not None
            web.restart()
            assert web.status == "running"
            import time
            deadline = time.monotonic() + 30
            while True:  # the server needs a moment after the restart
                try:
                    assert fetch(web).startswith(b"root:")
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)

        def test_volume_and_bind(writer, data):
            assert writer.exec("cat /data/f") == (0, "saved\\n")
            assert writer.exec("cat /shared/note.txt").output == "from the host\\n"
            code, _ = writer.exec("touch /shared/nope")
            assert code != 0  # read-only bind
    """)
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_healthcheck_strategy_uses_the_image_healthcheck(project, busybox_rootfs):
    ctx = project.mkdir("svc")
    (ctx / "Dockerfile").write_text(textwrap.dedent("""
        ARG BASE
        FROM ${BASE}
        HEALTHCHECK CMD test -f /tmp/ready
        CMD ["sh", "-c", "sleep 0.3; touch /tmp/ready; exec sleep 300"]
    """))
    project.makeconftest(base_conftest(busybox_rootfs, """
        svc_image = image(path="svc", buildargs={"BASE": "{base}"})
        svc = container(image="{svc_image}", init=True, ready=wait.healthcheck())
    """))
    project.makepyfile("""
        def test_ready(svc):
            assert svc.exec(["test", "-f", "/tmp/ready"]).exit_code == 0
    """)
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
