"""Docker's reference grammar and normalisation."""

from __future__ import annotations

import pytest

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.images.reference import is_id_prefix, normalize_tag, parse_reference


@pytest.mark.parametrize(("text", "stored"), [
    ("busybox", "busybox:latest"),
    ("busybox:1.36", "busybox:1.36"),
    ("library/busybox", "busybox:latest"),
    ("docker.io/library/busybox:1", "busybox:1"),
    ("index.docker.io/library/busybox", "busybox:latest"),
    ("docker.io/user/app:v2", "user/app:v2"),
    ("localhost:5000/team/app", "localhost:5000/team/app:latest"),
    ("ghcr.io/owner/app:Tag_1.0", "ghcr.io/owner/app:Tag_1.0"),
    ("my-app__x.y", "my-app__x.y:latest"),
])
def test_tags_are_stored_in_dockers_familiar_form(text: str, stored: str) -> None:
    assert normalize_tag(text) == stored


def test_full_names_keep_the_default_registry_and_library() -> None:
    ref = parse_reference("busybox")
    assert (ref.domain, ref.path, ref.tag, ref.full_name) == (
        "docker.io", "library/busybox", "latest", "docker.io/library/busybox")


def test_a_digest_reference_has_no_default_tag() -> None:
    digest = "sha256:" + "ab" * 32
    ref = parse_reference(f"app@{digest}")
    assert (ref.tag, ref.digest) == (None, digest)
    with pytest.raises(InvalidSpec, match="cannot contain a digest"):
        normalize_tag(f"app@{digest}")


@pytest.mark.parametrize(("text", "message"), [
    ("Busybox", "must be lowercase"),
    ("a:b:c", "invalid reference format"),
    ("app:", "invalid reference format"),
    ("-app", "invalid reference format"),
    ("ab" * 32, "64-byte hexadecimal"),
    ("app:" + "t" * 129, "invalid reference format"),
])
def test_bad_references_are_refused_naming_the_text(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message) as info:
        parse_reference(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("3fb88d", True), ("sha256:3fb88d", True), ("ab" * 32, True), ("busybox", False),
    ("3FB8", False), ("ab" * 33, False),
])
def test_id_prefixes(text: str, expected: bool) -> None:
    assert is_id_prefix(text) is expected
