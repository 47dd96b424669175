"""`docker cp` semantics on top of any Engine's put_archive/get_archive.

Copies are whole trees in one archive. Host-side extraction checks every entry and link (and
applies tarfile's `data` filter where Python has it), so an archive from a container can never
write outside the destination on the host.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from pathlib import Path

from pytest_isobox.engine import ContainerError, Engine


def copy_to(engine: Engine, container: str, src: str | Path, dest: str) -> None:
    """Copy a host file or directory into a container.

    As `docker cp SRC CONTAINER:DEST`: a DEST ending in `/` (or an existing directory) receives
    SRC under its own name; otherwise SRC is written as DEST itself.
    """
    source = Path(src)
    if not source.exists():
        raise ContainerError(f"cp: no such file or directory on the host: {source}")
    if dest.endswith("/") or _is_dir_in(engine, container, dest):
        parent, name = dest.rstrip("/") or "/", source.name
    else:
        parent, name = posixpath.dirname(dest) or "/", posixpath.basename(dest)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(source), arcname=name)
    engine.put_archive(container, parent, buf.getvalue())


def copy_from(engine: Engine, container: str, src: str, dest: str | Path) -> Path:
    """Copy a file or directory out of a container; returns the host path written.

    As `docker cp CONTAINER:SRC DEST`: into DEST when it is an existing directory, else as DEST.
    """
    data = engine.get_archive(container, src)
    target = Path(dest)
    into_dir = target.is_dir()
    parent = target if into_dir else target.parent
    parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        if not members:
            raise ContainerError(f"cp: {src} in {container} gave an empty archive")
        top = members[0].name.split("/")[0]
        if not into_dir:
            for m in members:
                m.name = target.name + m.name[len(top):]
        _extract_inside(tar, members, parent)
    return parent / (top if into_dir else target.name)


def _extract_inside(tar: tarfile.TarFile, members: list[tarfile.TarInfo], parent: Path) -> None:
    """Extract `members` below `parent`, refusing any entry (or link target) that would land
    outside it, including through a symlink an earlier entry made; devices and fifos are
    skipped. tarfile's `data` filter (Python >= 3.11.4, 3.12) is applied on top where it
    exists: Debian 12's 3.11.2 has none."""
    root = os.path.realpath(parent)

    def inside(path: str) -> bool:
        return os.path.commonpath([root, os.path.realpath(path)]) == root

    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    for member in members:
        if member.isdev() or member.isfifo():
            continue
        dest = os.path.join(root, member.name)
        if member.name.startswith("/") or not inside(dest):
            raise ContainerError(f"cp: the archive entry {member.name!r} leaves {parent}")
        if member.issym() or member.islnk():
            base = os.path.dirname(dest) if member.issym() else root
            if member.linkname.startswith("/") or not inside(os.path.join(base, member.linkname)):
                raise ContainerError(f"cp: the link {member.name!r} -> {member.linkname!r} "
                                     f"leaves {parent}")
        member.mode &= 0o777 if not member.isdir() else 0o7777
        tar.extract(member, root, set_attrs=not member.issym(), **extra)


def _is_dir_in(engine: Engine, container: str, path: str) -> bool:
    try:
        data = engine.get_archive(container, path)
    except ContainerError:  # the path does not exist in the container
        return False
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        first = tar.next()
    return bool(first and first.isdir())
