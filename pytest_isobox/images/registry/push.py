"""`isobox push`: a stored image to its registry.

The image goes as the store keeps it: an OCI manifest over uncompressed layers (what docker
and containerd pull). Blobs the registry has (HEAD) are skipped; one this image was pulled
with from another repository of the same registry is mounted from there; the rest are
uploaded in one PUT, or in PATCH chunks when `chunk_size` is given. The manifest goes last,
so the tag appears only once every blob is there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.images import config as oci
from pytest_isobox.images.reference import parse_reference
from pytest_isobox.images.registry.client import RegistryClient
from pytest_isobox.images.registry.errors import RegistryError

if TYPE_CHECKING:
    from pytest_isobox.images.store import ImageStore

# progress(event, digest, done, total): events "exists", "mounted", "upload", "done"
Progress = Callable[[str, str, int, int], None]


def _quiet(event: str, digest: str, done: int, total: int) -> None:
    pass


def push_image(store: ImageStore, text: str, *, progress: Progress | None = None,
               chunk_size: int | None = None) -> str:
    """Push the image `text` names (a tag); returns the manifest digest the registry holds."""
    ref = parse_reference(text)
    if ref.digest:
        raise InvalidSpec(f"push {text!r}: name a tag, not a digest")
    image = store.resolve(str(ref))
    report = progress or _quiet
    client = RegistryClient(ref, push=True)
    sources = [d.partition("@")[0] for d in store.repo_digests(image.id)]
    for digest in [*image.diff_ids, image.id]:
        size = store.blobs.size(digest)
        if client.has_blob(digest):
            report("exists", digest, size, size)
            continue
        if _mount(client, ref.domain, ref.path, sources, digest):
            report("mounted", digest, size, size)
            continue
        store.blobs.verify(digest)
        done = 0

        def advanced(count: int, digest: str = digest, size: int = size) -> None:
            nonlocal done
            done += count
            report("upload", digest, done, size)

        with open(store.blobs.path(digest), "rb") as source:
            client.upload_blob(digest, size, source, chunk_size, advanced)
        report("done", digest, size, size)
    manifest = store.blobs.read_bytes(image.manifest_digest)
    pushed = client.put_manifest(ref.tag or "latest", manifest, oci.MEDIA_MANIFEST)
    if pushed != image.manifest_digest:
        raise RegistryError(f"{ref}: registry {ref.domain} stored the manifest as {pushed}, "
                            f"sent {image.manifest_digest}")
    store.add_image(store.blobs.read_bytes(image.id),
                    repo_digest=f"{ref.familiar_name}@{pushed}")
    return pushed


def _mount(client: RegistryClient, domain: str, path: str, sources: list[str],
           digest: str) -> bool:
    """Mount from a repository of the same registry this image came from (docker does)."""
    for source in sources:
        try:
            other = parse_reference(source)
        except InvalidSpec:
            continue
        if other.domain != domain or other.path == path:
            continue
        try:
            if client.mount_blob(digest, other.path):
                return True
        except RegistryError:
            continue
    return False
