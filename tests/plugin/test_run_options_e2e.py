"""container()'s run options of issue 15 (capabilities, sysctls, names, /dev/shm, env files),
end to end on each engine: what the container sees."""

from __future__ import annotations

import textwrap

from tests.plugin.conftest import base_conftest


def test_container_run_options_reach_the_container(project, busybox_rootfs, engine_kind):
    (project.path / "app.env").write_text("# settings\nMODE=test\n")
    project.makeconftest(base_conftest(busybox_rootfs, """
        box = container(
            image="{base}", command=["sleep", "600"], cap_drop=["ALL"], cap_add=["kill"],
            sysctls={"kernel.shmmax": "123456789"}, extra_hosts={"db.test": "10.1.2.3"},
            dns=["10.0.0.53"], dns_search=["corp.test"], shm_size="16m", env_file="app.env",
            environment={"EXTRA": "1"}, ready=False)
    """))
    project.makepyfile(test_it=textwrap.dedent("""
        def test_sees(box):
            assert box.exec("grep CapEff /proc/self/status") == (0, "CapEff:\\t0000000000000020\\n")
            assert box.exec("cat /proc/sys/kernel/shmmax") == (0, "123456789\\n")
            assert box.exec("grep db.test /etc/hosts") == (0, "10.1.2.3\\tdb.test\\n")
            code, resolv = box.exec("cat /etc/resolv.conf")
            assert "nameserver 10.0.0.53\\n" in resolv and "search corp.test\\n" in resolv
            assert box.exec(["sh", "-c", "df -k /dev/shm | tail -1"])[1].split()[1] == "16384"
            assert box.exec("sh -c 'echo $MODE$EXTRA'") == (0, "test1\\n")
    """))
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_bad_run_option_fails_at_declaration(project, busybox_rootfs, engine_kind):
    project.makeconftest(base_conftest(busybox_rootfs, """
        box = container(image="{base}", sysctls={"vm.swappiness": "1"})
    """))
    project.makepyfile(test_it="def test_x(box):\n    pass\n")
    result = project.runpytest("-p", "no:cacheprovider")
    result.stderr.fnmatch_lines(["*sysctl 'vm.swappiness' is not allowed*"])
    assert result.ret != 0


def test_container_with_a_healthcheck_is_waited_until_healthy(project, busybox_rootfs,
                                                              engine_kind):
    """The default readiness waits for State.Health: the check fails until the container
    has made /tmp/ready, a second after it starts."""
    project.makeconftest(base_conftest(busybox_rootfs, """
        box = container(
            image="{base}", command=["sh", "-c", "sleep 1; touch /tmp/ready; sleep 600"],
            healthcheck={"cmd": "test -f /tmp/ready", "interval": "200ms", "retries": 50})
    """))
    project.makepyfile(test_it=textwrap.dedent("""
        def test_healthy(box):
            assert box.inspect()["State"]["Health"]["Status"] == "healthy"
            assert box.exec("test -f /tmp/ready")[0] == 0
    """))
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_image_healthcheck_failing_ends_in_one_line(project, busybox_rootfs, engine_kind):
    """An image's HEALTHCHECK is waited on too; once unhealthy, one line names the container
    and the last check's output."""
    (project.path / "ctx").mkdir()
    (project.path / "ctx" / "Dockerfile").write_text(
        "FROM isobox-test/plugin-busybox:latest\n"
        "HEALTHCHECK --interval=200ms --retries=2 CMD sh -c 'echo not yet ready; exit 3'\n"
        'CMD ["sleep", "600"]\n')
    project.makeconftest(base_conftest(busybox_rootfs, """
        checked = image(path="ctx")  # FROM base's tag: the test asks for base first
        box = container(image="{checked}")
    """))
    project.makepyfile(test_it="def test_x(base, box):\n    pass\n")
    result = project.runpytest("-p", "no:cacheprovider")
    line = "*container * is unhealthy (failing streak 2); last health check: exit 3: not yet ready*"
    result.stdout.fnmatch_lines([line])
    assert result.ret != 0
