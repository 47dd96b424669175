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
