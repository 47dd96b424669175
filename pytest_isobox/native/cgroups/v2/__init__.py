"""cgroup v2: one module per controller, and `manager` (a cgroup in the unified hierarchy)."""

# The controllers `manager` drives, named here so that choosing where each lives
# (cgroups.manager) loads no controller module of a version this machine does not use.
CONTROLLER_NAMES = ("memory", "cpu", "pids")
