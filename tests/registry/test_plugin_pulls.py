"""The plugin on the native engine pulls a fixture's missing image from the registry on
loopback: one line per pull (however many containers use it), the pull and its time in the
isobox summary, and `--isobox-pull=never|missing|always`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_isobox.images.store import ImageStore
from tests.conftest import needs_root
from tests.registry.servers import Registry

pytestmark = needs_root


def _pull_lines(text: str, ref: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"isobox: pulled {ref} ")]


def test_the_plugin_pulls_missing_images_once_and_reports_it(
        pytester: pytest.Pytester, store: ImageStore, two_layer_image: str, registry: Registry,
        tmp_path: Path) -> None:
    ref = f"{registry.netloc}/plugin/native:1"
    store.tag(two_layer_image, ref)
    store.push(ref)
    short = two_layer_image[7:19]
    pytester.makeconftest(f"""
        from pytest_isobox import container
        box = container(image={ref!r}, command=["sleep", "30"], scope="function", ready=False)
    """)
    pytester.makepyfile("def test_one(box):\n    assert box.status == 'running'\n\n"
                        "def test_two(box):\n    assert box.status == 'running'\n")
    home = f"--isobox-home={tmp_path / 'home'}"
    never = pytester.runpytest("-p", "no:cacheprovider", home, "--isobox-pull=never")
    never.assert_outcomes(errors=2)
    never.stdout.fnmatch_lines([f"*No such image: {ref} (pull policy never: not pulling it)*"])
    manifest = "/v2/plugin/native/manifests/1"
    assert registry.served("GET", manifest) == 0

    pulled = pytester.runpytest("-p", "no:cacheprovider", home)
    pulled.assert_outcomes(passed=2)
    text = pulled.stdout.str()
    lines = _pull_lines(text, ref)
    assert len(lines) == 1, text
    assert re.fullmatch(rf"isobox: pulled {re.escape(ref)} \({short}\) in \d+\.\d+s", lines[0])
    summary = text[text.index("isobox ="):]  # the isobox section of the terminal summary
    assert re.search(rf"pull {re.escape(ref)}\s+{short}\s+\d+(ms|\.\d\ds)", summary), summary
    assert registry.served("GET", manifest) == 1

    present = pytester.runpytest("-p", "no:cacheprovider", home)
    present.assert_outcomes(passed=2)
    assert _pull_lines(present.stdout.str(), ref) == []
    assert registry.served("GET", manifest) == 1

    always = pytester.runpytest("-p", "no:cacheprovider", home, "--isobox-pull=always")
    always.assert_outcomes(passed=2)
    assert len(_pull_lines(always.stdout.str(), ref)) == 1  # once per session, not per test
    assert registry.served("GET", manifest) == 2
