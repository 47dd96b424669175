"""engine/records.py: the records read-only verbs get back are plain classes that behave as
the dataclasses they replace (constructor, defaults, equality, repr, unhashable)."""

from __future__ import annotations

import pytest

from pytest_isobox.engine import ContainerState, ImageInfo, NetworkInfo, specs


def test_the_seam_and_specs_give_the_same_classes() -> None:
    assert specs.ContainerState is ContainerState and specs.ImageInfo is ImageInfo
    assert specs.NetworkInfo is NetworkInfo


def test_defaults_are_fresh_per_record() -> None:
    a, b = ContainerState("i", "n", "img", "iid", "created"), ContainerState("i", "n", "img",
                                                                             "iid", "created")
    assert (a.pid, a.exit_code, a.oom_killed, a.health) == (None, None, False, None)
    assert a.ips == a.ports == a.labels == {} and a.command == []
    a.labels["k"] = "v"
    assert b.labels == {}
    assert not a.running and ContainerState("i", "n", "i", "d", "running").running


def test_equality_and_repr_as_a_dataclass_s() -> None:
    a = ImageInfo("sha256:1", ["a:1"], {"x": 1}, 3, "2020")
    assert a == ImageInfo("sha256:1", ["a:1"], {"x": 1}, size=3, created="2020")
    assert a != ImageInfo("sha256:1", ["a:1"], {"x": 1}, 4, "2020")
    assert a != ("sha256:1", ["a:1"], {"x": 1}, 3, "2020")
    assert repr(a) == "ImageInfo(id='sha256:1', tags=['a:1'], config={'x': 1}, size=3, " \
                      "created='2020')"
    n = NetworkInfo("net", "abc", "bridge", None, None, internal=True)
    assert repr(n) == ("NetworkInfo(name='net', id='abc', driver='bridge', subnet=None, "
                       "gateway=None, containers={}, labels={}, internal=True, created=None)")
    with pytest.raises(TypeError):
        hash(n)
    with pytest.raises(TypeError):
        ContainerState("only", "four", "args", "here")  # type: ignore[call-arg]


def test_specs_records_behave_as_the_dataclasses_they_were() -> None:
    """records.record gives what @dataclass gave: constructor in field order with defaults
    (a factory's fresh per record), equality, repr, frozen ones immutable and hashable, and
    as_dict/replace as dataclasses' asdict/replace (config.json and config hashes keep)."""
    import dataclasses
    import json
    import pickle

    from pytest_isobox.engine import ContainerSpec, MountSpec, PortSpec, RestartPolicy
    from pytest_isobox.engine.records import as_dict, replace

    @dataclasses.dataclass(frozen=True)
    class Port:  # what PortSpec was
        container_port: int
        protocol: str = "tcp"
        host_ip: str = "127.0.0.1"
        host_port: int = 0

    port = PortSpec(80, host_port=8080)
    assert port == PortSpec(80, "tcp", "127.0.0.1", 8080) and port != PortSpec(81)
    assert repr(port) == "PortSpec(container_port=80, protocol='tcp', host_ip='127.0.0.1', " \
                         "host_port=8080)"
    assert repr(Port(80, host_port=8080)).endswith(repr(port)[len("PortSpec"):])
    assert hash(port) == hash(Port(80, host_port=8080)) and {port: 1}[PortSpec(80, host_port=8080)]
    with pytest.raises(AttributeError):
        port.host_port = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(port)) == port
    a, b = ContainerSpec("img"), ContainerSpec(image="img")
    a.env["A"] = "1"
    assert b.env == {} and a != b and b == ContainerSpec("img")
    with pytest.raises(TypeError):
        hash(a)
    with pytest.raises(TypeError):
        ContainerSpec()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ContainerSpec("img", no_such_option=1)  # type: ignore[call-arg]
    spec = ContainerSpec("img", ports=[port], mounts=[MountSpec("tmpfs", "/t")],
                         restart=RestartPolicy("always"), ulimits={"nofile": (1, 2)})
    doc = as_dict(spec)
    assert doc["ports"] == [dataclasses.asdict(Port(80, host_port=8080))]
    assert doc["restart"] == {"name": "always", "maximum_retry": 0}
    assert list(doc) == list(ContainerSpec._fields) and doc["ulimits"] == {"nofile": (1, 2)}
    assert json.loads(json.dumps(doc))["mounts"][0]["target"] == "/t"
    doc["ports"].clear()
    assert spec.ports == [port]  # a copy, as asdict's
    changed = replace(spec, persistent=True)
    assert changed.persistent and not spec.persistent and changed.ports == spec.ports
    with pytest.raises(TypeError):
        replace(spec, no_such_option=1)


def test_a_run_loads_no_dataclasses() -> None:
    """The run path's modules (CLI run, engine, network, cgroups, runtime, shim) define
    records, not dataclasses: `import dataclasses` loads inspect, ast and tokenize (~7 ms)."""
    import subprocess
    import sys

    code = ("import sys, pytest_isobox.cli.containers, pytest_isobox.cli.run_options, "
            "pytest_isobox.native.engine, pytest_isobox.native.sweep, "
            "pytest_isobox.native.network.manager, pytest_isobox.images.store, "
            "pytest_isobox.native.runtime, pytest_isobox.native.cgroups, "
            "pytest_isobox.native.shim, pytest_isobox.native.monitor; "
            "print(sorted(m for m in ('dataclasses', 'inspect', 'hashlib', 'shutil', "
            "'subprocess', 'datetime', 'pickle') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout == "[]\n"
