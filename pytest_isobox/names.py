"""The names by which isobox's things are known on the host, in one place: the engine makes
them, `isobox system check` (hostcheck.py) finds them. Import-light on purpose."""

PROCESS_PREFIX = "isobox-"  # every long-lived process of ours is named so (its comm)
# A run reaper finishing what its engine's close handed it (reaper.py): `isobox system check`
# waits for these to end, so that a check right after a run sees its end state.
FINISHER_PROCESS = PROCESS_PREFIX + "finisher"
BRIDGE_PREFIX = "isobox-"  # bridges of our networks
VETH_PREFIX = "ibv"  # host ends of containers' veths
NFT_TABLE = "isobox"  # our nftables table
HEREDOC_DIR_PREFIX = "isobox-run-"  # + <pid>-<start>-: a build's RUN heredoc scripts, in /tmp
ROOTFS_DIR_PREFIX = "isobox-rootfs-"  # + <pid>-<start>-: image(rootfs=...) being imported, /tmp
# The temp dirs (in the system's temp dir) that name the process they belong to: the run
# reaper removes a dead owner's, `isobox system check` lists and `system check --prune` removes them.
OWNED_TEMP_PREFIXES = (HEREDOC_DIR_PREFIX, ROOTFS_DIR_PREFIX)


def owned_temp_prefix(prefix: str, owner_token: str) -> str:
    """`prefix` + the owner's `<pid>-<start>` + "-": the start of an owned temp dir's name."""
    return f"{prefix}{owner_token}-"
