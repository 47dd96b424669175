"""Image references as Docker reads them: `busybox` means `docker.io/library/busybox:latest`.

Tags are stored and shown in Docker's familiar form (`busybox:latest`, `ghcr.io/o/app:1`):
`docker.io/` and, for one-component names, `library/` are dropped, as `docker images` does.
"""

from __future__ import annotations

import re

from pytest_isobox.engine.errors import InvalidSpec
from pytest_isobox.engine.records import FrozenRecord

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_HEX_DIGITS = frozenset("0123456789abcdef")  # (a full id is refused without a pattern)
_MAX_NAME = 255


class Reference(FrozenRecord):
    """A parsed image reference; `str()` gives the familiar form with its tag or digest."""

    _fields = ("domain", "path", "tag", "digest")

    def __init__(self, domain: str, path: str, tag: str | None = None,
                 digest: str | None = None) -> None:
        self._set(domain=domain, path=path, tag=tag, digest=digest)

    @property
    def familiar_name(self) -> str:
        """The name as `docker images` shows it (`busybox`, `user/app`, `ghcr.io/o/app`)."""
        if self.domain != DEFAULT_DOMAIN:
            return f"{self.domain}/{self.path}"
        if self.path.startswith("library/") and self.path.count("/") == 1:
            return self.path[len("library/"):]
        return self.path

    @property
    def full_name(self) -> str:
        """The fully qualified name (`docker.io/library/busybox`)."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.familiar_name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parse `text` with Docker's grammar; a bare name gets the tag `latest`.

    Raises InvalidSpec naming the text when it is not a valid reference.
    """
    if len(text) == 64 and _HEX_DIGITS.issuperset(text):
        raise InvalidSpec(
            f"invalid reference {text!r}: cannot specify 64-byte hexadecimal strings"
        )
    match = _REFERENCE.fullmatch(text)
    if not match:
        reason = "invalid reference format"
        if _REFERENCE.fullmatch(text.lower()):
            reason += ": repository name must be lowercase"
        raise InvalidSpec(f"invalid reference {text!r}: {reason}")
    name = match.group("name")
    domain, path = _split_domain(name)
    if len(f"{domain}/{path}") > _MAX_NAME:
        raise InvalidSpec(f"invalid reference {text!r}: repository name longer than {_MAX_NAME}")
    tag, digest = match.group("tag"), match.group("digest")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def normalize_tag(text: str) -> str:
    """The stored form of a tag: familiar name plus tag (`busybox` -> `busybox:latest`).

    Raises InvalidSpec when `text` is not a `name[:tag]` reference (digests cannot be tags).
    """
    ref = parse_reference(text)
    if ref.digest:
        raise InvalidSpec(f"invalid tag {text!r}: a tag cannot contain a digest")
    return str(ref)


def is_id_prefix(text: str) -> bool:
    """Whether `text` could name an image by id: `sha256:<hex>` or bare lowercase hex."""
    hex_part = text.removeprefix("sha256:")
    return bool(re.fullmatch(r"[0-9a-f]{1,64}", hex_part))


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if path.lower() != path:
        raise InvalidSpec(
            f"invalid reference {name!r}: invalid reference format: repository name must be "
            "lowercase"
        )
    return domain, path
