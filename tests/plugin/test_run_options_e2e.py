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
