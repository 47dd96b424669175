"""The names by which isobox's things are known on the host, in one place: the engine makes
them, `isobox system check` (hostcheck.py) finds them. Import-light on purpose."""

PROCESS_PREFIX = "isobox-"  # every long-lived process of ours is named so (its comm)
BRIDGE_PREFIX = "isobox-"  # bridges of our networks
VETH_PREFIX = "ibv"  # host ends of containers' veths
NFT_TABLE = "isobox"  # our nftables table
HEREDOC_DIR_PREFIX = "isobox-run-"  # + <pid>-<start>-: a build's RUN heredoc scripts, in /tmp
