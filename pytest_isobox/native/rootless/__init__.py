"""Rootless mode of the native engine: containers for users who are not root (issue 6).

A user namespace makes the user root inside with the user's subordinate ids (`idmap`,
`userns`); mounts that need real root are replaced by ones a user namespace allows
(`mounts`); networks live in a helper network namespace of that user namespace
(`networks`) and published ports are relayed from the host's loopback (`ports`); cgroup
limits apply only where the user has a delegated cgroup v2 subtree (`limits`); a store is
used by one owner only (`store`). `prerequisites` says in one error what is missing.
"""
