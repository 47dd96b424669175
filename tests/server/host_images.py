"""Images made from this host's own programs (no registry here): the binaries, the shared
libraries `ldd` names and their data trees, over the busybox test image. The Postgres and Redis
ones start as the official images do, so testcontainers' PostgresContainer and RedisContainer
run them unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent / "images"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_PROGRAMS = ("postgres", "initdb", "psql")
PG_MODULES = ("plpgsql.so", "dict_snowball.so")  # what initdb loads
PG_TREES = ("/usr/share/postgresql/15", "/usr/share/zoneinfo")
# Debian's redis-tools: the server is this binary under the name redis-server (as Debian links it)
REDIS_BINARY = Path("/usr/bin/redis-check-rdb")


def have_postgres() -> bool:
    return all((PG_BIN / p).exists() for p in PG_PROGRAMS) and shutil.which("ldd") is not None


def _libraries(binary: str) -> set[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return {word for line in out.splitlines() for word in line.split() if word.startswith("/")}


def _overlay(dest: Path, binaries: list[str], trees: tuple[str, ...]) -> None:
    files: set[str] = set()
    for binary in binaries:
        files |= {binary, *_libraries(binary)}
    for name in sorted(files):
        for path in {name, os.path.realpath(name)}:  # the link's path and its target's
            target = dest / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    for tree in trees:
        shutil.copytree(tree, dest / tree.lstrip("/"), symlinks=True, dirs_exist_ok=True)


def postgres_context(dest: Path, base: str) -> Path:
    """A build context for an image of this host's Postgres 15 over `base`."""
    dest.mkdir(parents=True)
    binaries = [str(PG_BIN / p) for p in PG_PROGRAMS]
    binaries += [f"/usr/lib/postgresql/15/lib/{m}" for m in PG_MODULES]
    _overlay(dest / "root", binaries, PG_TREES)
    shutil.copy2(HERE / "postgres-entrypoint.sh", dest / "entrypoint.sh")
    (dest / "Dockerfile").write_text(f"""\
FROM {base}
COPY root/ /
COPY entrypoint.sh /usr/local/bin/entrypoint.sh
RUN echo "postgres:x:999:999::/var/lib/postgresql:/bin/sh" >> /etc/passwd \\
 && echo "postgres:x:999:" >> /etc/group
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
""")
    return dest


def have_redis() -> bool:
    return REDIS_BINARY.exists() and shutil.which("ldd") is not None


def redis_context(dest: Path, base: str) -> Path:
    """A build context for an image of this host's Redis over `base`: `redis-server` with
    protected mode off by default, as the official image runs it."""
    dest.mkdir(parents=True)
    _overlay(dest / "root", [str(REDIS_BINARY)], ())
    (dest / "Dockerfile").write_text(f"""\
FROM {base}
COPY root/ /
RUN ln -s redis-check-rdb /usr/bin/redis-server && mkdir /data
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
""")
    return dest
