"""cgroup v1: one module per controller, and `manager` (a cgroup over the v1 hierarchies)."""

# The controllers `manager` drives, named here so that choosing where each lives
# (cgroups.manager) loads no controller module of a version this machine does not use.
CONTROLLER_NAMES = ("memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices")
