"""`isobox system check`: what isobox left on this host, read from /proc, /sys and the
firewall, without opening an engine (no sweep, no state changed).

Ours, item by item (one line each, `KIND DETAIL`):
- mount: overlay and nsfs mounts, and any mount point under a path naming isobox;
- cgroup: directories below an `isobox` cgroup of any hierarchy (v1 controllers, v2);
- link: bridges (`isobox-*`) and veths (`ibv*`);
- netns: named network namespaces whose name starts with isobox;
- nft: rules of the `isobox` nftables table; iptables: rules commented `isobox:...`;
- process: our processes in the host's pid namespace (named `isobox-*`: shims, monitors,
  spares, relays, holders, agents; and slirp4netns started by a holder) and every process in
  a pid namespace one of ours made (containers);
- state: container directories and networks of a known home whose owner died (non-persistent);
- temp: temp names in a known home whose owner died (a half-unpacked layer, a pull in flight).

A run reaper finishing what a closed engine handed it (`isobox-finisher`: the network
teardown of a CLI command or a pytest session that just ended) is waited for first, 10 s at
most. `--save FILE` records the lines; `--baseline FILE` reports only lines not in FILE. Exit 1
when something is reported, so CI can fail on a leak.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from pytest_isobox.names import (
    BRIDGE_PREFIX,
    FINISHER_PROCESS,
    NFT_TABLE,
    OWNED_TEMP_PREFIXES,
    PROCESS_PREFIX,
    VETH_PREFIX,
)

_CGROUP_ROOT = Path("/sys/fs/cgroup")
PRUNE_CGROUP_AGE = 5.0  # s: an empty cgroup this young may be a container being started


def current_state(homes: Iterable[Path] = ()) -> list[str]:
    """Every item of ours on the host now, sorted."""
    items = [*mounts(), *cgroups(), *links(), *named_netns(), *nft_rules(), *iptables_rules(),
             *processes(), *dead_owner_state(homes), *dead_owned_temp_dirs()]
    return sorted(set(items))


def wait_for_finishers(timeout: float = 10.0) -> None:
    """Until no run reaper of this pid namespace is finishing the network teardown its
    closed engine handed it (a CLI command or a pytest session that just ended), or
    `timeout` seconds: what they are removing is not left behind."""
    import time

    ours = _pid_ns("self")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(
            info[1] == FINISHER_PROCESS and info[2] == ours
            for info in map(_process, (int(e) for e in os.listdir("/proc") if e.isdigit()))
            if info is not None):
        time.sleep(0.01)  # (no event says another process ended: polled)


def mounts() -> Iterator[str]:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            after = fields[fields.index("-") + 1:]  # fstype, source, super options
            fstype = after[0]
            if "isobox" in point or (fstype in ("overlay", "nsfs")
                                     and "isobox" in " ".join(after[1:])):
                yield f"mount {point} {fstype}"


def cgroups() -> Iterator[str]:
    if not _CGROUP_ROOT.is_dir():
        return
    roots = [_CGROUP_ROOT, *(p for p in _CGROUP_ROOT.iterdir() if p.is_dir())]
    for root in roots:
        ours = root / "isobox"
        if not ours.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(ours):
            for name in dirnames:
                yield f"cgroup {os.path.join(dirpath, name)}"


def links() -> Iterator[str]:
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return
    for name in names:
        if name.startswith((BRIDGE_PREFIX, VETH_PREFIX)):
            yield f"link {name}"


def named_netns() -> Iterator[str]:
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for name in names:
        if name.startswith("isobox"):
            yield f"netns {name}"


def nft_rules() -> Iterator[str]:
    nft = shutil.which("nft")
    if nft is None:
        return
    tables = _run([nft, "list", "tables"])
    for line in tables.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == NFT_TABLE:
            for rule in _run([nft, "list", "table", parts[1], NFT_TABLE]).splitlines():
                if 'comment "isobox:' in rule:
                    yield "nft " + re.sub(r"\s+", " ", rule.strip())


def iptables_rules() -> Iterator[str]:
    for tool in ("iptables-save", "ip6tables-save"):
        path = shutil.which(tool)
        if path is None:
            continue
        table = ""
        for line in _run([path]).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith("-A ") and "isobox:" in line:
                yield f"iptables {tool.split('-')[0]} {table} {line}"


def processes() -> Iterator[str]:
    """Ours in the host's pid namespace, and every process of a pid namespace we made."""
    ours_ns = _pid_ns("self")
    table: dict[int, tuple[int, str, str]] = {}  # pid -> (ppid, comm, pid namespace)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _process(int(entry))
            if info is not None:
                table[int(entry)] = info
    for pid, (ppid, comm, ns) in sorted(table.items()):
        if ns == ours_ns:
            parent = table.get(ppid, (0, "", ""))[1]
            if comm.startswith(PROCESS_PREFIX) or (comm == "slirp4netns"
                                                   and parent.startswith(PROCESS_PREFIX)):
                yield f"process {comm} pid {pid}"
            continue
        # in another pid namespace: ours when the nearest ancestor in ours is one of ours
        ancestor, seen = ppid, set()
        while ancestor in table and ancestor not in seen and table[ancestor][2] != ours_ns:
            seen.add(ancestor)
            ancestor = table[ancestor][0]
        if ancestor in table and table[ancestor][1].startswith(PROCESS_PREFIX):
            yield f"process {comm} pid {pid} in a container (pid namespace {ns})"


def dead_owner_state(homes: Iterable[Path]) -> Iterator[str]:
    """Container directories whose owner process is gone and that are not persistent."""
    from pytest_isobox.processes import ProcessIdentity

    for home in homes:
        containers = Path(home) / "containers"
        try:
            entries = sorted(containers.iterdir())
        except OSError:
            continue
        for cdir in entries:
            try:
                config = json.loads((cdir / "config.json").read_text())
            except (OSError, ValueError):
                if not cdir.name.startswith("."):
                    yield f"state {cdir} (no readable config.json)"
                continue
            kept = (cdir / "kept").exists()  # see ContainerDir.owner
            owner = None if kept else ProcessIdentity.load(config.get("owner"))
            if owner is not None and not owner.alive():
                yield f"state {cdir} (owner pid {owner.pid} is gone)"
        yield from _dead_owner_networks(Path(home))
        yield from _dead_owner_temps(Path(home))


def _dead_owner_networks(home: Path) -> Iterator[str]:
    """Networks of a home made by a process that is gone (not persistent ones)."""
    from pytest_isobox.processes import ProcessIdentity

    for path in sorted((home / "networks" / "by-name").glob("*.json")):
        try:
            owner = ProcessIdentity.load(json.loads(path.read_text()).get("owner"))
        except (OSError, ValueError):
            continue
        if owner is not None and not owner.alive():
            yield f"state network {path.stem} of {home} (owner pid {owner.pid} is gone)"


def _dead_owner_temps(home: Path) -> Iterator[str]:
    """Temp names a dead process left: `tmp/<pid>-<start>-*` (layers being unpacked, blobs
    being pulled), `containers/.tmp-<pid>-<start>-*` (a container dir being made)."""
    for folder, prefix in ((home / "tmp", ""), (home / "containers", ".tmp-")):
        for path, pid in _of_dead_owners(folder, prefix):
            yield f"temp {path} (owner pid {pid} is gone)"


def dead_owned_temp_dirs() -> Iterator[str]:
    """Owned temp dirs (a build's RUN heredoc scripts, a rootfs the plugin was importing) in
    the system's temp dir whose process is gone."""
    for path, pid in _dead_owned_temp_dirs():
        yield f"temp {path} (owner pid {pid} is gone)"


def _dead_owned_temp_dirs() -> Iterator[tuple[Path, int]]:
    import tempfile

    for prefix in OWNED_TEMP_PREFIXES:
        yield from _of_dead_owners(Path(tempfile.gettempdir()), prefix)


def _of_dead_owners(folder: Path, prefix: str) -> Iterator[tuple[Path, int]]:
    """Entries `<prefix><pid>-<start>-...` of `folder` whose process is gone, with that pid."""
    from pytest_isobox.processes import ProcessIdentity

    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid, _, rest = name[len(prefix):].partition("-")
        owner = ProcessIdentity.parse(f"{pid}:{rest.partition('-')[0]}")
        if owner is not None and not owner.alive():
            yield folder / name, owner.pid


def known_homes(extra: Iterable[str | Path] = ()) -> list[Path]:
    """The homes to look in: those given, and the default one (ISOBOX_HOME or the cache's)."""
    from pytest_isobox.homes import default_home

    return list(dict.fromkeys([*map(Path, extra), default_home()]))


def prune(homes: Iterable[Path]) -> list[str]:
    """Sweep every home that exists with the native engine's own sweep (what dead owners
    left: containers, their cgroups, networks, rules, relays); one line per thing removed.
    Live runs' containers, persistent ones and anything not ours are never touched."""

    from pytest_isobox.engine import open_engine
    from pytest_isobox.images.atomic import remove_path

    removed: list[str] = []
    for home in homes:
        if not (Path(home) / "containers").is_dir():
            continue
        engine = open_engine("native", home=home)
        try:
            removed += [f"{home}: {line}" for line in engine.swept]
            temps = list(_of_dead_owners(Path(home) / "tmp", ""))
            if temps:
                engine.images_store  # noqa: B018 - opening the store sweeps dead owners' temps
                removed += [f"{home}: temp {path.name} of dead process {pid}"
                            for path, pid in temps if not path.exists()]
        finally:
            engine.close()
    for path, pid in _dead_owned_temp_dirs():
        remove_path(path)
        removed.append(f"temp dir {path} of dead process {pid}")
    if os.geteuid() == 0:  # the rootful cgroups (a rootless user's go with its holder)
        from pytest_isobox.native.sweep import sweep_orphan_cgroups

        known = {p.name for home in homes for p in (Path(home) / "containers").glob("*")}
        removed += sweep_orphan_cgroups(known.__contains__, PRUNE_CGROUP_AGE)
    return removed


def diff(now: list[str], baseline: list[str]) -> list[str]:
    """What is in `now` and not in `baseline` (pids and paths included: a new container is a
    new line even when an older one was there before)."""
    before = set(baseline)
    return [item for item in now if item not in before]


def _process(pid: int) -> tuple[int, str, str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        ns = _pid_ns(str(pid))
    except OSError:
        return None
    comm = raw[raw.index(b"(") + 1:raw.rindex(b")")].decode(errors="replace")
    fields = raw[raw.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):  # a zombie holds nothing but its pid
        return None
    return int(fields[1]), comm, ns


def _pid_ns(pid: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
