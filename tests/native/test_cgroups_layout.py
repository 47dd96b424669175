"""Pure logic of the cgroup package: layout detection from mountinfo texts, limit checks,
value conversions. No cgroup is touched here."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_isobox.engine import EngineUnavailable, InvalidSpec
from pytest_isobox.native.cgroups import (
    Limits,
    cgroup_path_for_ns,
    check_available,
    open_cgroup,
    parse_layout,
)
from pytest_isobox.native.cgroups.v2.cpu import shares_to_weight

PROC_CGROUPS = """\
#subsys_name	hierarchy	num_cgroups	enabled
cpuset	3	1	1
cpu	1	1	1
cpuacct	2	1	1
blkio	7	1	1
memory	4	30	1
devices	5	1	1
freezer	6	1	1
net_cls	0	1	1
hugetlb	0	1	1
pids	8	1	1
"""

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

PURE_V2 = """\
25 30 0:23 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
28 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""

COMOUNTED = """\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/my\\040pids rw,relatime shared:11 - cgroup cgroup rw,pids
"""


def layout_of(mountinfo: str, unified_controllers: str = "", proc_cgroups: str = PROC_CGROUPS):
    return parse_layout(mountinfo, proc_cgroups, lambda _mountpoint: unified_controllers)


def test_hybrid_puts_each_controller_where_it_is_mounted():
    layout = layout_of(HYBRID, "hugetlb\n")
    for controller in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids"):
        hierarchy = layout.where(controller)
        assert hierarchy is not None and hierarchy.version == 1
        assert hierarchy.mountpoint == Path("/sys/fs/cgroup") / controller
    assert layout.where("hugetlb").mountpoint == Path("/sys/fs/cgroup/unified")
    assert layout.where("hugetlb").version == 2
    assert layout.where("io") is None
    assert "name=systemd" not in layout.v1


def test_pure_v2_takes_controllers_from_cgroup_controllers():
    layout = layout_of(PURE_V2, "cpuset cpu io memory hugetlb pids rdma misc\n")
    assert layout.v1 == {}
    for controller in ("memory", "cpu", "pids"):
        assert layout.where(controller) == layout.unified
    assert layout.unified.mountpoint == Path("/sys/fs/cgroup")


def test_comounted_controllers_share_one_hierarchy_and_mountpoints_are_unescaped():
    layout = layout_of(COMOUNTED)
    assert layout.where("cpu") is layout.where("cpuacct")
    assert layout.where("cpu").mountpoint == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert layout.where("pids").mountpoint == Path("/sys/fs/cgroup/my pids")
    assert layout.unified is None


def test_controller_disabled_in_proc_cgroups_is_not_used():
    disabled = PROC_CGROUPS.replace("memory\t4\t30\t1", "memory\t4\t30\t0")
    assert layout_of(HYBRID, proc_cgroups=disabled).where("memory") is None


def test_controller_on_v1_is_never_taken_from_v2():
    layout = layout_of(HYBRID, "memory hugetlb")  # a v1-bound controller cannot work on v2
    assert layout.where("memory").version == 1
    assert "memory" not in layout.unified.controllers


def test_missing_controller_is_reported_only_when_a_limit_needs_it():
    layout = layout_of(HYBRID.replace("rw,pids\n", "rw,nopids\n"), "hugetlb")
    check_available(Limits(memory=1 << 20, cpus=0.5), layout=layout)
    with pytest.raises(EngineUnavailable) as caught:
        check_available(Limits(pids=10), layout=layout)
    message = str(caught.value)
    assert "'pids'" in message and "pids limit 10" in message
    assert "/sys/fs/cgroup/unified/cgroup.controllers" in message


def test_create_refuses_before_touching_anything_when_a_controller_is_missing(tmp_path):
    fake = f"1 0 0:1 / {tmp_path} rw - cgroup cgroup rw,memory\n"
    cgroup = open_cgroup("isobox/never", layout=layout_of(fake))
    with pytest.raises(EngineUnavailable, match="'cpu'.*cpus=0.5"):
        cgroup.create(Limits(cpus=0.5))
    assert list(tmp_path.iterdir()) == []


def test_unified_is_joined_only_for_what_v1_lacks():
    hybrid = layout_of(HYBRID, "hugetlb")
    assert open_cgroup("isobox/a", layout=hybrid).v2 is None
    no_freezer = hybrid.without("freezer")
    cgroup = open_cgroup("isobox/a", layout=no_freezer)
    assert cgroup.v2 is not None and cgroup.v2.controllers == {}
    pure = open_cgroup("isobox/a", layout=layout_of(PURE_V2, "cpu memory pids io"))
    assert pure.v1 is None and set(pure.v2.controllers) == {"cpu", "memory", "pids"}


def test_the_named_controllers_are_those_each_manager_drives():
    """cgroups.manager chooses where controllers live by their names alone (a v1 host loads
    no v2 module): the names are the managers' controllers, in their order."""
    from pytest_isobox.native.cgroups import v1, v2
    from pytest_isobox.native.cgroups.v1.manager import CONTROLLERS as V1_DRIVEN
    from pytest_isobox.native.cgroups.v2.manager import CONTROLLERS as V2_DRIVEN

    assert tuple(V1_DRIVEN) == v1.CONTROLLER_NAMES
    assert tuple(V2_DRIVEN) == v2.CONTROLLER_NAMES


def test_cgroup_namespace_path_only_on_pure_v2():
    assert cgroup_path_for_ns("isobox/c1", layout=layout_of(HYBRID, "hugetlb")) is None
    pure = layout_of(PURE_V2, "memory")
    assert cgroup_path_for_ns("isobox/c1", layout=pure) == Path("/sys/fs/cgroup/isobox/c1")


@pytest.mark.parametrize("name", ["", "/isobox", "isobox/../etc", "isobox//x", "a b", "isobox/"])
def test_bad_cgroup_names_are_refused(name):
    with pytest.raises(InvalidSpec, match="invalid cgroup name"):
        open_cgroup(name, layout=layout_of(HYBRID))


@pytest.mark.parametrize("kwargs, word", [
    ({"memory": -1}, "memory"), ({"cpus": -0.5}, "cpus"), ({"cpus": 0.001}, "cpus"),
    ({"cpu_shares": -2}, "cpu_shares"),
])
def test_bad_limits_are_refused_naming_the_value(kwargs, word):
    with pytest.raises(InvalidSpec, match=word):
        Limits(**kwargs)


def test_zero_means_no_limit_as_in_docker():
    assert Limits(memory=0, cpus=0, cpu_shares=0, pids=0).controllers() == {}
    assert Limits(pids=-1).controllers() == {}
    assert set(Limits(memory=1, cpus=1, pids=1).controllers()) == {"memory", "cpu", "pids"}


@pytest.mark.parametrize("shares, weight", [
    (2, 1), (1024, 100), (262144, 10000), (512, 59), (2048, 174), (1, 1), (10**6, 10000),
])
def test_cpu_shares_convert_to_weight_as_runc_does(shares, weight):
    assert shares_to_weight(shares) == weight
