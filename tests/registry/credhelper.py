"""A Docker credential helper for tests: `docker-credential-<name>` written onto PATH.

It answers `get` from a fixed table (server -> (user, secret)), says "credentials not found"
for other servers as real helpers do, and logs every call (`action payload`) to a file, so a
test sees which registries were asked for.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest


def install(bindir: Path, name: str, table: dict[str, tuple[str, str]],
            monkeypatch: pytest.MonkeyPatch) -> Path:
    """Write the helper into `bindir`, put `bindir` first on PATH; returns the call log."""
    bindir.mkdir(parents=True, exist_ok=True)
    log = bindir / f"{name}.calls"
    log.write_text("")
    program = bindir / f"docker-credential-{name}"
    program.write_text(f"""#!{sys.executable}
import json, sys
table = {json.dumps(table)}
action, payload = sys.argv[1], sys.stdin.read().strip()
with open({str(log)!r}, "a") as log:
    log.write(f"{{action}} {{payload}}\\n")
if action == "get":
    if payload not in table:
        print("credentials not found in native keychain")
        sys.exit(1)
    user, secret = table[payload]
    print(json.dumps({{"ServerURL": payload, "Username": user, "Secret": secret}}))
""")
    program.chmod(0o755)
    import os

    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines()
