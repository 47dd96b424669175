"""One repository on a registry: manifests and blobs over the distribution API.

The endpoints of the reference's domain are tried in order (Docker Hub mirrors first); a
mirror that fails falls through to the next, and the registry itself comes last.
"""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Callable
from typing import IO

from pytest_isobox.images.blobs import sha256_digest
from pytest_isobox.images.reference import Reference
from pytest_isobox.images.registry import credentials as creds
from pytest_isobox.images.registry.errors import NameUnknown, RegistryError
from pytest_isobox.images.registry.settings import RegistrySettings, offline
from pytest_isobox.images.registry.transport import Response, Transport

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
MANIFEST_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
ACCEPT = f"{MEDIA_OCI_MANIFEST}, {MEDIA_OCI_INDEX}, {MEDIA_DOCKER_MANIFEST}, {MEDIA_DOCKER_LIST}"
_MAX_MANIFEST = 4 << 20
_RESUMES = 5


class RegistryClient:
    """Manifests and blobs of `ref`'s repository (`push`: ask for push rights too)."""

    def __init__(self, ref: Reference, settings: RegistrySettings | None = None, *,
                 push: bool = False) -> None:
        if offline():
            from pytest_isobox.images.registry.errors import OfflineError

            raise OfflineError(f"{ref}: not reaching registry {ref.domain}: ISOBOX_OFFLINE is set")
        self.ref = ref
        self.settings = settings or RegistrySettings.from_env()
        self.scope = f"repository:{ref.path}:{'pull,push' if push else 'pull'}"
        bases = [self.settings.endpoints(ref.domain)[-1]] if push \
            else self.settings.endpoints(ref.domain)
        own = creds.lookup(ref.domain)
        api = self.settings.api_host(ref.domain)
        self._transports = []
        for base in bases:
            netloc = urllib.parse.urlsplit(base).netloc
            # credentials go to the registry they were given for, never to a mirror
            given = own if netloc == api else creds.lookup(netloc)
            self._transports.append(Transport(base, given, self.settings, ref.domain))

    # ------------------------------------------------------------------ requests

    def _request(self, method: str, path: str, *, scope: str | None = None,
                 **kw: object) -> Response:
        last: RegistryError | None = None
        for transport in self._transports:
            try:
                return transport.request(method, f"/v2/{self.ref.path}{path}",
                                         scope=scope or self.scope, **kw)  # type: ignore[arg-type]
            except RegistryError as exc:
                last = exc  # a mirror failing: try the next endpoint
        assert last is not None
        raise last

    @property
    def transport(self) -> Transport:
        return self._transports[-1]

    # ------------------------------------------------------------------ manifests

    def get_manifest(self, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index by tag or digest; a digest
        asked for is checked against the bytes received."""
        with self._request("GET", f"/manifests/{reference}", headers={"Accept": ACCEPT}) as resp:
            data = resp.read(_MAX_MANIFEST + 1)
            media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if len(data) > _MAX_MANIFEST:
            raise RegistryError(f"{self.ref}: manifest {reference} is larger than 4 MiB")
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            from pytest_isobox.images.blobs import CorruptedBlob

            raise CorruptedBlob(f"{self.ref}: manifest {reference} from registry "
                                f"{self.ref.domain} has digest {digest} (digest mismatch)")
        return data, media, digest

    def head_manifest(self, reference: str) -> str | None:
        """The digest the registry gives for a tag, None when it gives none."""
        with self._request("HEAD", f"/manifests/{reference}", headers={"Accept": ACCEPT}) as resp:
            return resp.headers.get("Docker-Content-Digest")

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> str:
        with self._request("PUT", f"/manifests/{reference}", body=data,
                           headers={"Content-Type": media_type,
                                    "Content-Length": str(len(data))},
                           ok=(200, 201)) as resp:
            resp.read()
            return resp.headers.get("Docker-Content-Digest") or sha256_digest(data)

    # ------------------------------------------------------------------ blobs

    def get_small_blob(self, digest: str, limit: int = 64 << 20) -> bytes:
        """A config blob, checked against its digest."""
        stream = self.open_blob(digest, None)
        try:
            data = stream.read(limit + 1)
        finally:
            stream.close()
        if len(data) > limit:
            raise RegistryError(f"{self.ref}: blob {digest} is larger than {limit} bytes")
        if sha256_digest(data) != digest:
            from pytest_isobox.images.blobs import CorruptedBlob

            raise CorruptedBlob(f"{self.ref}: blob {digest} from registry {self.ref.domain} "
                                f"has digest {sha256_digest(data)} (digest mismatch)")
        return data

    def open_blob(self, digest: str, size: int | None,
                  on_bytes: Callable[[int], None] | None = None) -> BlobStream:
        """A stream of a blob's bytes that resumes with `Range` when the connection drops."""
        return BlobStream(self, digest, size, on_bytes)

    def has_blob(self, digest: str) -> bool:
        try:
            with self._request("HEAD", f"/blobs/{digest}") as resp:
                return resp.status == 200
        except NameUnknown:
            return False

    def mount_blob(self, digest: str, source_path: str) -> bool:
        """Cross-repository mount; True when the registry mounted it (201)."""
        query = urllib.parse.urlencode({"mount": digest, "from": source_path})
        scope = f"{self.scope} repository:{source_path}:pull"
        with self._request("POST", f"/blobs/uploads/?{query}", scope=scope, ok=(201, 202),
                           headers={"Content-Length": "0"}, body=b"") as resp:
            resp.read()
            mounted = resp.status == 201
            location = resp.headers.get("Location")
        if not mounted and location:
            self._cancel(location)
        return mounted

    def upload_blob(self, digest: str, size: int, source: IO[bytes],
                    chunk_size: int | None = None,
                    on_bytes: Callable[[int], None] | None = None) -> None:
        """Upload a blob: one PUT (monolithic), or PATCH chunks of `chunk_size` then PUT."""
        with self._request("POST", "/blobs/uploads/", ok=(202,), body=b"",
                           headers={"Content-Length": "0"}) as resp:
            resp.read()
            location = self._absolute(resp)
        if chunk_size:
            offset = 0
            while offset < size:
                chunk = source.read(min(chunk_size, size - offset))
                if not chunk:
                    raise RegistryError(f"{self.ref}: blob {digest} ended at {offset} of {size}")
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Length": str(len(chunk)),
                           "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
                with self.transport.request("PATCH", location, scope=self.scope, body=chunk,
                                            headers=headers, ok=(202,)) as resp:
                    resp.read()
                    location = self._absolute(resp)
                offset += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
            body: object = b""
            length = 0
        else:
            body = _Counting(source, on_bytes) if on_bytes else source
            length = size
        sep = "&" if "?" in location else "?"
        with self.transport.request("PUT", f"{location}{sep}digest={digest}", scope=self.scope,
                                    body=body, retry_body=False, ok=(201, 204),
                                    headers={"Content-Type": "application/octet-stream",
                                             "Content-Length": str(length)}) as resp:
            resp.read()

    def _absolute(self, resp: Response) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.ref.domain}: upload without a Location")
        return urllib.parse.urljoin(resp.url, location)

    def _cancel(self, location: str) -> None:
        try:
            url = urllib.parse.urljoin(self.transport.base_url() + "/", location)
            self.transport.request("DELETE", url, scope=self.scope, ok=(204, 404)).close()
        except RegistryError:
            pass


class _Counting:
    """A read-only stream that reports how many bytes were read (upload progress)."""

    def __init__(self, source: IO[bytes], on_bytes: Callable[[int], None]) -> None:
        self._source, self._on_bytes = source, on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._on_bytes(len(data))
        return data


class BlobStream:
    """A blob's bytes from the registry; a dropped connection resumes where it stopped
    (`Range`), up to a few times. The caller verifies the digest."""

    def __init__(self, client: RegistryClient, digest: str, size: int | None,
                 on_bytes: Callable[[int], None] | None) -> None:
        self._client = client
        self._digest = digest
        self._size = size
        self._on_bytes = on_bytes
        self.received = 0
        self.resumed = 0
        self._resp: Response | None = self._open()

    def _open(self) -> Response:
        headers = {"Range": f"bytes={self.received}-"} if self.received else {}
        resp = self._client._request("GET", f"/blobs/{self._digest}", headers=headers,
                                     ok=(200, 206))
        if self.received and resp.status != 206:
            resp.close()
            raise RegistryError(f"{self._client.ref}: blob {self._digest}: the connection "
                                f"dropped at {self.received} bytes and the registry cannot "
                                "resume (no Range support)")
        return resp

    def read(self, size: int = -1) -> bytes:
        while True:
            if self._resp is None:
                return b""
            try:
                data = self._resp.read(size if size and size > 0 else 1 << 20)
            except (OSError, http.client.HTTPException) as exc:
                data, error = b"", exc
            else:
                error = None
            if data:
                self.received += len(data)
                if self._on_bytes:
                    self._on_bytes(len(data))
                return data
            complete = error is None and (self._size is None or self.received >= self._size)
            self._resp.close()
            self._resp = None
            if complete:
                return b""
            if self.resumed >= _RESUMES:
                raise RegistryError(f"{self._client.ref}: blob {self._digest}: connection "
                                    f"dropped {self.resumed + 1} times (at {self.received} of "
                                    f"{self._size} bytes)")
            self.resumed += 1
            self._resp = self._open()

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
