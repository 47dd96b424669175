"""logs (-t, --since, --until, --tail all), cp with - (tar on stdin/stdout), stats (one
sample: CPU %, memory % against the limit), network ls/prune and volume prune, both engines."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time

from tests.cli.conftest import Cli
from tests.conftest import needs_root

pytestmark = needs_root


def test_logs_timestamps_since_until_tail(cli: Cli) -> None:
    name = cli.name()
    cli("run", "--name", name, cli.image, "sh", "-c", "echo one; echo two; echo three")
    stamped = cli.out("logs", "-t", name).splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "three"]
    first = stamped[0].split(" ", 1)[0]
    assert first.endswith("Z") and "T" in first
    assert cli.out("logs", "--tail", "all", name) == "one\ntwo\nthree\n"
    assert cli.out("logs", "--tail", "1", name) == "three\n"
    assert cli.out("logs", "--since", "1h", name) == "one\ntwo\nthree\n"
    assert cli.out("logs", "--until", "1h", name) == ""
    assert cli.out("logs", "--since", str(int(time.time()) + 3600), name) == ""
    assert cli.out("logs", "--since", "2000-01-01", name) == "one\ntwo\nthree\n"
    bad = cli("logs", "--since", "yesterday", name, check=False)
    assert bad.returncode != 0 and "yesterday" in bad.stderr.decode()
    assert bad.stderr.decode().count("\n") == 1


def test_cp_with_dash(cli: Cli) -> None:
    name = cli.run_d()
    out = cli("cp", f"{name}:/etc/passwd", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as archive:
        member = archive.getmember("passwd")
        assert b"root:" in archive.extractfile(member).read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        data = b"from stdin\n"
        info = tarfile.TarInfo("given.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    cli("cp", "-", f"{name}:/tmp", input=buf.getvalue())
    assert cli.out("exec", name, "cat", "/tmp/given.txt") == "from stdin\n"
    junk = cli("cp", "-", f"{name}:/tmp", input=b"not a tar", check=False)
    assert junk.returncode != 0 and "not a tar archive" in junk.stderr.decode()
    assert junk.stderr.decode().count("\n") == 1


def test_stats_one_sample(cli: Cli) -> None:
    busy = cli.run_d("-m", "64m", command=("sh", "-c", "while true; do :; done"))
    row = json.loads(cli.out("stats", "--no-stream", "--format", "json", busy))
    assert row["Name"] == busy
    assert float(row["CPUPerc"].rstrip("%")) > 0  # a busy loop uses CPU over the sample
    _, limit = row["MemUsage"].split(" / ")
    assert limit == "64MiB"
    assert 0 < float(row["MemPerc"].rstrip("%")) < 100
    assert int(row["PIDs"]) >= 1
    table = cli.out("stats", "--no-stream", busy).splitlines()
    assert table[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"]
    assert busy in table[1]
    missing = cli("stats", "--no-stream", "isobox-no-such-container", check=False)
    assert missing.returncode == 1 and missing.stdout == b""


def test_network_ls_and_prunes(cli: Cli) -> None:
    used, idle = cli.name("network"), cli.name("network")
    cli("network", "create", "-l", "purpose=test", used)
    cli("network", "create", idle)
    name = cli.run_d("--network", used)
    listed = cli.out("network", "ls", "--filter", "name=isobox-cli-", "--format", "{{.Name}}")
    assert {used, idle} <= set(listed.split())
    assert cli.out("network", "ls", "--filter", "label=purpose=test",
                   "--format", "{{.Name}}").split() == [used]
    ids = cli.out("network", "ls", "-q").split()
    assert cli.out("network", "inspect", "-f", "{{.Id}}", used).strip()[:12] in ids
    refused = cli("network", "prune", check=False)  # no terminal, no -f: asks nobody
    assert refused.returncode != 0 and "--force" in refused.stderr.decode()
    assert idle in cli.out("network", "ls", "--format", "{{.Name}}").split()
    pruned = cli.out("network", "prune", "-f")
    assert idle in pruned and used not in pruned
    left = cli.out("network", "ls", "--format", "{{.Name}}").split()
    assert used in left and idle not in left
    assert name


def test_volume_prune_keeps_mounted_ones(cli: Cli) -> None:
    kept, gone = cli.name("volume"), cli.name("volume")
    cli("volume", "create", kept)
    cli("volume", "create", gone)
    cli.run_d("-v", f"{kept}:/data")
    pruned = cli.out("volume", "prune", "-f")
    assert gone in pruned and kept not in pruned
    names = cli.out("volume", "ls")
    assert kept in names and gone not in names


def _one_line_error(done, needle: str) -> None:
    err = done.stderr.decode()
    assert done.returncode == 1 and needle in err and err.count("\n") == 1, err


def test_network_connect_disconnect_internal_gateway(cli: Cli) -> None:
    """connect/disconnect of a running container (a new interface and address, its alias
    resolving from a peer, gone again after), of a created one (wired at start), and an
    internal network with its own gateway: no default route, nothing masqueraded."""
    net = cli.name("network")
    third = "44" if cli.engine == "docker" else "46"
    subnet = f"10.231.{third}.0/24"
    cli("network", "create", "--internal", "--subnet", subnet, "--gateway",
        f"10.231.{third}.254", net)
    doc = json.loads(cli.out("network", "inspect", net))[0]
    assert doc["Internal"] is True and doc["IPAM"]["Config"][0]["Gateway"] == \
        f"10.231.{third}.254"
    peer = cli.run_d("--network", net)
    if cli.engine == "native":  # as moby 26+; Docker 20.10 keeps a route whose packets drop
        assert "default" not in cli.out("exec", peer, "ip", "route")
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True,
                         check=True).stdout
    assert not [line for line in nat.splitlines() if subnet in line and "MASQUERADE" in line]
    name = cli.run_d()
    outside = json.loads(cli.out("inspect", name))[0]["NetworkSettings"]["IPAddress"]
    assert cli("exec", peer, "ping", "-c", "1", "-W", "2", outside, check=False).returncode != 0
    cli("network", "connect", "--alias", "db", net, name)
    endpoint = json.loads(cli.out("inspect", name))[0]["NetworkSettings"]["Networks"][net]
    assert endpoint["IPAddress"].startswith(f"10.231.{third}.") and "db" in endpoint["Aliases"]
    assert endpoint["IPAddress"] in cli.out("exec", name, "ip", "-4", "-o", "addr")
    assert endpoint["MacAddress"] and endpoint["MacAddress"] in cli.out("exec", name, "ip",
                                                                        "link")
    assert endpoint["NetworkID"] == doc["Id"]
    assert cli.out("exec", name, "ip", "route").count("default") == 1  # still via bridge
    for target in ("db", name):
        cli("exec", peer, "ping", "-c", "1", "-W", "5", target)
    _one_line_error(cli("network", "connect", net, name, check=False), "already exists")
    _one_line_error(cli("network", "connect", "--alias", "x", "bridge", name, check=False),
                    "user defined networks")
    cli("network", "disconnect", net, name)
    assert net not in json.loads(cli.out("inspect", name))[0]["NetworkSettings"]["Networks"]
    assert f"10.231.{third}." not in cli.out("exec", name, "ip", "-4", "-o", "addr")
    assert cli("exec", peer, "ping", "-c", "1", "-W", "2", "db", check=False).returncode != 0
    _one_line_error(cli("network", "disconnect", net, name, check=False), "is not connected")
    _one_line_error(cli("network", "connect", "isobox-no-such-net", name, check=False),
                    "isobox-no-such-net")
    _one_line_error(cli("network", "connect", net, "isobox-no-such-box", check=False),
                    "isobox-no-such-box")
    cli("network", "connect", net, name)
    cli("restart", "-t", "1", name)  # a connection outlives a restart, as Docker's
    assert f"10.231.{third}." in cli.out("exec", name, "ip", "-4", "-o", "addr")
    cli("network", "disconnect", "bridge", name)
    cli("network", "disconnect", net, name)  # on no network at all: loopback only
    assert cli.out("exec", name, "ip", "-4", "-o", "addr").count("inet ") == 1
    cli("network", "connect", net, name)
    assert f"10.231.{third}." in cli.out("exec", name, "ip", "-4", "-o", "addr")
    created = cli.name()
    cli("create", "--name", created, cli.image, "sleep", "1000")
    cli("network", "connect", net, created)
    cli("start", created)
    assert f"10.231.{third}." in cli.out("exec", created, "ip", "-4", "-o", "addr")
    cli("exec", created, "ping", "-c", "1", "-W", "5", peer)


def test_network_gateway_outside_its_subnet_is_one_line(cli: Cli) -> None:
    net = cli.name("network")
    done = cli("network", "create", "--subnet", "10.231.47.0/24", "--gateway", "10.231.48.1",
               net, check=False)
    err = done.stderr.decode()
    assert done.returncode == 1 and "10.231.48.1" in err and err.count("\n") == 1, err


def test_network_driver_connect_ip_and_unnamed_volume(cli: Cli) -> None:
    net = cli.name("network")
    third = "48" if cli.engine == "docker" else "49"
    cli("network", "create", "-d", "bridge", "--attachable", "--subnet", f"10.231.{third}.0/24",
        net)
    _one_line_error(cli("network", "create", "-d", "macvlan", cli.name("network"), check=False),
                    "macvlan")
    name = cli.run_d()
    cli("network", "connect", "--ip", f"10.231.{third}.77", net, name)
    endpoint = json.loads(cli.out("inspect", name))[0]["NetworkSettings"]["Networks"][net]
    assert endpoint["IPAddress"] == f"10.231.{third}.77"
    assert f"10.231.{third}.77/24" in cli.out("exec", name, "ip", "-4", "-o", "addr")
    other = cli.run_d()
    taken = cli("network", "connect", "--ip", f"10.231.{third}.77", net, other, check=False)
    assert taken.returncode == 1 and taken.stderr.decode().count("\n") == 1
    created = cli.name()  # --ip for a container not started yet: its address once it starts
    cli("create", "--name", created, cli.image, "sleep", "1000")
    cli("network", "connect", "--ip", f"10.231.{third}.78", net, created)
    cli("start", created)
    assert f"10.231.{third}.78/24" in cli.out("exec", created, "ip", "-4", "-o", "addr")
    made = cli.out("volume", "create").strip()
    cli.made.append(("volume", made))
    assert len(made) == 64 and made in cli.out("volume", "ls", "-q").split()


def test_leaving_the_network_its_ports_lead_to_unpublishes_them(cli: Cli) -> None:
    """As Docker: `network disconnect` of the network a container's published ports lead to
    is allowed and takes the ports along (port and inspect show none)."""
    net = cli.name("network")
    cli("network", "create", net)
    name = cli.run_d("--network", net, "-p", "127.0.0.1::8080")
    assert "8080/tcp -> 127.0.0.1:" in cli.out("port", name)
    cli("network", "disconnect", net, name)
    assert cli.out("port", name) == ""
    doc = json.loads(cli.out("inspect", name))[0]
    assert doc["NetworkSettings"]["Ports"] in ({}, None)
    if cli.engine == "native":  # its DNAT rules went too
        rules = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                               check=True).stdout
        assert doc["Id"] not in rules
