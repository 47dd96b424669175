"""sha256 for the commands that hash a little and exit (a cached `isobox build`).

`import hashlib` loads OpenSSL's bindings (`_hashlib`, 2-3 ms, as much as the rest of a cached
build's imports); the interpreter's built-in `_sha256` gives the same digests for a few
hundred bytes of keys and configs at no load cost. Where it is missing (another Python),
hashlib's is used.
"""

from __future__ import annotations

try:
    from _sha256 import sha256
except ImportError:  # pragma: no cover - CPython 3.12 renamed it; any Python has hashlib's
    try:
        from _sha2 import sha256
    except ImportError:
        from hashlib import sha256

__all__ = ["sha256"]
