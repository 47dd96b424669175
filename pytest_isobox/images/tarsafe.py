"""Extracting tars without ever leaving the root they are extracted into.

Every path is walked one component at a time from a directory fd, as if `root` were `/`:
absolute symlinks restart at root, relative ones are followed from where they sit, and a `..`
that would climb above root is refused, like securejoin and moby's archive code. Entry names
that are absolute or hold `..` are refused too. The final component is never followed, so a
symlink planted in root cannot redirect a write. Refusals raise UnsafeArchiveEntry (an
InvalidSpec) naming the entry.

In a user namespace that maps few ids (the single-id mapping of a user without subordinate
ids), an owner the namespace does not map becomes root, and device nodes (which only the
host's root may make) are skipped; both are recorded in `TarExtractor.notes`, not failures.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tarfile
from decimal import Decimal
from pathlib import Path
from typing import IO, Self

from pytest_isobox import idmaps
from pytest_isobox.engine import ContainerError, InvalidSpec, IsoboxError
from pytest_isobox.images import whiteouts
from pytest_isobox.images.tartree import is_kept_xattr, write_entry_tree

_MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC  # root itself may be /proc/<pid>/root
_PAX_XATTR = "SCHILY.xattr."
_CHUNK = 1 << 20


class UnsafeArchiveEntry(InvalidSpec):
    """A tar entry or path would land outside the root it is extracted into."""


def entry_parts(name: str, what: str = "tar entry") -> list[str]:
    """The components of a relative archive path; refuses absolute paths and `..`."""
    if name.startswith("/"):
        raise UnsafeArchiveEntry(f"{what} {name!r}: absolute paths are not allowed")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveEntry(f"{what} {name!r}: '..' is not allowed")
    return parts


def path_parts(path: str) -> list[str]:
    """The components of a path inside a root (`/etc/x` and `etc/x` alike); refuses `..`."""
    return entry_parts(path.lstrip("/"), "path")


def _fd_path(fd: int, name: str = "") -> str:
    return f"/proc/self/fd/{fd}/{name}" if name else f"/proc/self/fd/{fd}"


class RootedDir:
    """Directory fds resolved inside `root`; caches resolved directories until replaced."""

    def __init__(self, root: Path) -> None:
        self.root_fd = os.open(root, _ROOT_FLAGS)
        self._cache: dict[tuple[str, ...], int] = {}

    def close(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()
        os.close(self.root_fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forget(self, parts: list[str]) -> None:
        """Drop cached directories at or below `parts` (it is being replaced)."""
        key = tuple(parts)
        for cached in [k for k in self._cache if k[: len(key)] == key]:
            os.close(self._cache.pop(cached))

    def open_dir(self, parts: list[str], *, create: bool, what: str) -> int:
        """An fd (owned by this object) of the directory at `parts`, made if `create`."""
        key = tuple(parts)
        if not key:
            return self.root_fd
        if key in self._cache:
            return self._cache[key]
        fd = self._walk(parts, create=create, what=what)
        self._cache[key] = fd
        return fd

    def _walk(self, parts: list[str], *, create: bool, what: str) -> int:
        stack = [os.dup(self.root_fd)]
        todo = list(reversed(parts))
        links = 0
        try:
            while todo:
                comp = todo.pop()
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if len(stack) == 1:
                        raise UnsafeArchiveEntry(f"{what}: a symlink leads outside the root")
                    os.close(stack.pop())
                    continue
                cur = stack[-1]
                try:
                    st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(comp, 0o755, dir_fd=cur)
                    except FileExistsError:
                        pass
                    st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_SYMLINKS:
                        raise UnsafeArchiveEntry(f"{what}: too many levels of symbolic links")
                    target = os.readlink(comp, dir_fd=cur)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                    todo.extend(reversed([p for p in target.split("/") if p]))
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(f"{what}: {comp!r} is not a directory")
                stack.append(os.open(comp, _DIR_FLAGS, dir_fd=cur))
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)


def _xattrs_from_pax(member: tarfile.TarInfo) -> dict[str, bytes]:
    found = {}
    for key, value in member.pax_headers.items():
        if not key.startswith(_PAX_XATTR):
            continue
        name = key[len(_PAX_XATTR):]
        if is_kept_xattr(name):
            found[name] = value.encode("utf-8", "surrogateescape")
    return found


class TarExtractor:
    """Applies tar entries under `base` inside `root`.

    `overlay_whiteouts`: translate `.wh.` entries to overlay whiteouts (unpacking a layer).
    `keep_dirs`: refuse to replace a directory by a non-directory or the reverse (docker cp).
    """

    def __init__(self, root: Path, base: list[str] | None = None, *,
                 overlay_whiteouts: bool = False, keep_dirs: bool = False,
                 error: type[IsoboxError] = InvalidSpec) -> None:
        self._error = error
        self._dirs = RootedDir(root)
        self._base = base or []
        self._whiteouts = overlay_whiteouts
        self._keep_dirs = keep_dirs
        self._dir_times: list[tuple[list[str], int]] = []
        self._unmapped: dict[str, set[int]] = {"uid": set(), "gid": set()}
        self._skipped_nodes: list[str] = []
        self.content_bytes = 0

    @property
    def notes(self) -> list[str]:
        """What this user namespace could not reproduce (empty when everything was)."""
        found = []
        owners = ", ".join(f"{kind}s {' '.join(map(str, sorted(ids)))}"
                           for kind, ids in self._unmapped.items() if ids)
        if owners:
            found.append(f"owners this user namespace does not map were given to root: {owners}")
        if self._skipped_nodes:
            shown = ", ".join(self._skipped_nodes[:5])
            more = f" and {len(self._skipped_nodes) - 5} more" if len(self._skipped_nodes) > 5 \
                else ""
            found.append(f"device nodes skipped (not allowed in a user namespace): {shown}{more}")
        return found

    def _chown(self, target: int | str, uid: int, gid: int, *, dir_fd: int | None = None,
               follow_symlinks: bool = True) -> None:
        """chown; an id the user namespace does not map (EINVAL) becomes root, noted."""
        try:
            os.chown(target, uid, gid, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
            return
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            new_uid = uid if idmaps.mapped("uid", uid) else 0
            new_gid = gid if idmaps.mapped("gid", gid) else 0
            if (new_uid, new_gid) == (uid, gid):
                raise
        if new_uid != uid:
            self._unmapped["uid"].add(uid)
        if new_gid != gid:
            self._unmapped["gid"].add(gid)
        os.chown(target, new_uid, new_gid, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def close(self) -> None:
        self._dirs.close()

    def extract_all(self, tar: tarfile.TarFile) -> None:
        for member in tar:
            self.extract(tar, member)
        self.finish()

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """Apply one entry; a system error is raised as `error`, naming the entry."""
        rel = entry_parts(member.name)
        if not rel:
            return  # the root itself: it exists, Docker leaves it alone
        what = f"tar entry {member.name!r}"
        try:
            self._apply(tar, member, self._base + rel, what)
        except OSError as exc:
            raise self._error(f"cannot extract {what}: {exc.strerror or exc}") from None

    def _apply(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str],
               what: str) -> None:
        parent = self._dirs.open_dir(parts[:-1], create=True, what=what)
        name = parts[-1]
        if self._whiteouts and name.startswith(whiteouts.WHITEOUT_PREFIX):
            self._whiteout(parts, parent, name, what, member)
            return
        self._clear(parts, parent, name, member, what)
        if member.isdir():
            self._make_dir(parts, parent, name, member)
        elif member.isfile():
            self._make_file(tar, parent, name, member)
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=parent)
            self._chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(name, ns=_times(member), dir_fd=parent, follow_symlinks=False)
        elif member.islnk():
            self._make_hardlink(parent, name, member, what)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._make_node(parent, name, member)
        else:
            raise InvalidSpec(f"{what}: unsupported entry type {member.type!r}")

    def finish(self) -> None:
        """Set directory mtimes last (creating children changed them), deepest first."""
        for parts, mtime in reversed(self._dir_times):
            try:
                parent = self._dirs.open_dir(parts[:-1], create=False, what="/".join(parts))
                fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
            except OSError:
                continue  # a later entry replaced or removed it
            try:
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)
        self._dir_times.clear()

    def _whiteout(self, parts: list[str], parent: int, name: str, what: str,
                  member: tarfile.TarInfo) -> None:
        if name == whiteouts.OPAQUE_MARKER:
            whiteouts.mark_opaque(parent)
            return
        hidden = name[len(whiteouts.WHITEOUT_PREFIX):]
        if not hidden or hidden in (".", ".."):
            raise UnsafeArchiveEntry(f"{what}: malformed whiteout")
        self._remove_existing(parts[:-1] + [hidden], parent, hidden)
        whiteouts.make_overlay_whiteout(parent, hidden)
        self._set_node_owner_and_time(parent, hidden, member)

    def _remove_existing(self, parts: list[str], parent: int, name: str) -> None:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        self._dirs.forget(parts)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)

    def _clear(self, parts: list[str], parent: int, name: str, member: tarfile.TarInfo,
               what: str) -> None:
        """Make room for the entry: keep an existing dir for a dir, else remove what is there."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and member.isdir():
            return
        if self._keep_dirs and (is_dir or member.isdir()):
            kind = "directory" if is_dir else "non-directory"
            raise ContainerError(f"{what}: cannot overwrite {kind} {'/'.join(parts)!r} "
                                 f"with {'a directory' if member.isdir() else 'a non-directory'}")
        self._remove_existing(parts, parent, name)

    def _make_dir(self, parts: list[str], parent: int, name: str,
                  member: tarfile.TarInfo) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            pass
        fd = self._dirs.open_dir(parts, create=False, what=member.name)
        self._chown(fd, member.uid, member.gid)
        os.chmod(fd, member.mode & 0o7777)
        self._set_xattrs(fd, member)
        self._dir_times.append((parts, _times(member)[1]))

    def _make_file(self, tar: tarfile.TarFile, parent: int, name: str,
                   member: tarfile.TarInfo) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            source = tar.extractfile(member)
            if source is not None:
                while chunk := source.read(_CHUNK):
                    _write_all(fd, chunk)
            self._chown(fd, member.uid, member.gid)
            os.chmod(fd, member.mode & 0o7777)
            self._set_xattrs(fd, member)
            os.utime(fd, ns=_times(member))
        finally:
            os.close(fd)
        self.content_bytes += member.size

    def _make_hardlink(self, parent: int, name: str, member: tarfile.TarInfo, what: str) -> None:
        target = self._base + entry_parts(member.linkname, f"{what} link target")
        if not target:
            raise UnsafeArchiveEntry(f"{what}: hard link to the root")
        target_parent = self._dirs.open_dir(target[:-1], create=False, what=what)
        st = os.stat(target[-1], dir_fd=target_parent, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeArchiveEntry(f"{what}: hard link to a directory")
        os.link(target[-1], name, src_dir_fd=target_parent, dst_dir_fd=parent,
                follow_symlinks=False)

    def _make_node(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        try:
            os.mknod(name, kind | 0o600, os.makedev(member.devmajor, member.devminor),
                     dir_fd=parent)
        except PermissionError:
            if kind == stat.S_IFIFO or not whiteouts.in_user_namespace():
                raise
            self._skipped_nodes.append(member.name)
            return
        self._set_node_owner_and_time(parent, name, member, member.mode & 0o7777)

    def _set_node_owner_and_time(self, parent: int, name: str, member: tarfile.TarInfo,
                                 mode: int | None = None) -> None:
        """Owner, mode and mtime of a device node or fifo, set through an O_PATH fd."""
        node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            self._chown(_fd_path(node), member.uid, member.gid)
            if mode is not None:
                os.chmod(_fd_path(node), mode)
            os.utime(_fd_path(node), ns=_times(member))
        finally:
            os.close(node)

    @staticmethod
    def _set_xattrs(fd: int, member: tarfile.TarInfo) -> None:
        for key, value in _xattrs_from_pax(member).items():
            os.setxattr(fd, key, value)


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in ns; PAX headers may give fractional seconds, kept exactly."""
    try:
        mtime = int(Decimal(member.pax_headers["mtime"]) * 10**9)
    except (KeyError, ArithmeticError):
        mtime = int(member.mtime * 10**9)
    return mtime, mtime


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def extract_into(root: Path, dest: str, fileobj: IO[bytes]) -> None:
    """Extract a tar (plain or compressed) into directory `dest` inside the rootfs `root`.

    Docker's PUT archive: `dest` must be an existing directory; owners, modes and mtimes are
    kept; a directory is never replaced by a non-directory or the reverse. Nothing is ever
    written outside `root`, whatever the entries or the symlinks already in `root`.
    """
    base = path_parts(dest)
    with RootedDir(root) as dirs:
        try:
            dirs.open_dir(base, create=False, what=f"destination {dest!r}")
        except FileNotFoundError:
            raise ContainerError(f"destination {dest!r} does not exist in the container") from None
        except NotADirectoryError:
            raise ContainerError(f"destination {dest!r} is not a directory") from None
    extractor = TarExtractor(root, base, keep_dirs=True, error=ContainerError)
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            extractor.extract_all(tar)
    except tarfile.TarError as exc:
        raise ContainerError(f"cannot extract archive into {dest!r}: {exc}") from None
    finally:
        extractor.close()


def extract_context(dest: Path, fileobj: IO[bytes], what: str = "build context") -> None:
    """A build context's tar (plain or compressed) into the empty directory `dest`.

    The same rooted walk as layers and docker cp: no entry, `..` or symlink lands outside
    `dest`. The one extractor for contexts from a client (`build -`, the API's POST /build),
    so Python's own `extractall` (whose `filter=` older 3.11 releases lack) is never used.
    A tar that is not one raises InvalidSpec naming `what`.
    """
    extractor = TarExtractor(dest)
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            extractor.extract_all(tar)
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidSpec(f"{what}: not a valid tar archive: {exc}") from None
    finally:
        extractor.close()


def archive_path(root: Path, path: str) -> bytes:
    """A tar of `path` inside `root`, entries named from its basename (docker cp semantics).

    Symlinks on the way to `path` resolve inside `root`; a symlink at `path` itself and any
    under it are archived as links, never followed. ContainerError when `path` is missing.
    """
    parts = path_parts(path)
    out = io.BytesIO()
    with RootedDir(root) as dirs:
        try:
            parent = dirs.open_dir(parts[:-1], create=False, what=f"path {path!r}")
            if parts:
                os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise ContainerError(f"could not find {path!r} in the container") from None
        name = parts[-1] if parts else "."
        write_entry_tree(parent if parts else dirs.root_fd, name if parts else None, out,
                         arcname=name)
    return out.getvalue()
