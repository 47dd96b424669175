"""The build context: which files a COPY or ADD selects, their checksum, and the tar it sends.

Guarantees: a source path never escapes the context (`../` and symlinks pointing out are
refused); files excluded by .dockerignore are never selected; the checksum covers content,
mode, owner and link target but never mtime, and costs one stat per unchanged file thanks to
the stat cache.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
import time

from pytest_isobox.builder.dockerignore import DockerIgnore, compile_pattern, walk_context
from pytest_isobox.engine.errors import BuildError
from pytest_isobox.engine.records import Record
from pytest_isobox.sha256 import sha256

TYPE_CHECKING = False
if TYPE_CHECKING:  # (tarfile loads only where a tar is read or written, not for a checksum)
    import tarfile
    from collections.abc import Callable, Iterable
    from typing import IO

_GLOB_CHARS = set("*?[")
_RACY_NS = 1_000_000_000  # files changed this recently are re-read next time (racy stat)


class CopyEntry(Record):
    """One thing a COPY/ADD writes: `dest` is its absolute path in the image; `kind` is
    "file", "dir" or "symlink".

    Content comes from `source` (a host file), or `data` (heredocs, files from another image).
    `extract` marks a local archive that ADD unpacks into `dest`; `stat` is `source`'s, for its
    content digest.
    """

    _fields = ("dest", "kind", "mode", "uid", "gid", "mtime", "source", "data", "link",
               "extract", "stat")

    def __init__(self, dest: str, kind: str, mode: int = 0o644, uid: int = 0, gid: int = 0,
                 mtime: float = 0.0, source: str | None = None, data: bytes | None = None,
                 link: str = "", extract: bool = False, stat: os.stat_result | None = None
                 ) -> None:
        self.dest = dest
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
        self.source = source
        self.data = data
        self.link = link
        self.extract = extract
        self.stat = stat


class StatCache:
    """(dev, inode) -> (size, mtime_ns, ctime_ns, mode, sha256) of context files, kept between
    builds.

    One JSON file per context directory in the cache dir, rewritten atomically; a stale or
    missing entry only costs a re-read, never a wrong digest: ctime catches a content change
    whose mtime was put back (`cp -p`, `touch -r`), and files modified less than a second before
    they were hashed are not remembered (a later write in the same clock tick could hide).
    """

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = None if path is None else os.fspath(path)  # (no pathlib: see cache.py)
        self._entries: dict[str, list] | None = None
        self._seen: set[str] = set()
        self._dirty = False

    @classmethod
    def for_context(cls, cache_dir: str | os.PathLike, context_dir: str | os.PathLike
                    ) -> StatCache:
        name = sha256(os.path.realpath(context_dir).encode()).hexdigest()[:32]
        return cls(os.path.join(cache_dir, "stat", f"{name}.json"))

    def _load(self) -> dict[str, list]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None:
                try:
                    with open(self.path, "rb") as f:
                        self._entries = json.loads(f.read())
                except (OSError, ValueError):
                    self._entries = {}
        return self._entries

    def digest(self, path: str, st: os.stat_result) -> str:
        """sha256 hex of a regular file's content, read only if its stat changed."""
        entries = self._entries if self._entries is not None else self._load()
        key = f"{st.st_dev}:{st.st_ino}"
        self._seen.add(key)
        known = entries.get(key)
        if known is not None and known[0] == st.st_size and known[1] == st.st_mtime_ns \
                and known[2] == st.st_ctime_ns and known[3] == st.st_mode:
            return known[4]
        import hashlib  # (a file's content: OpenSSL's sha256, the fastest)

        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if time.time_ns() - st.st_mtime_ns > _RACY_NS:
            entries[key] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, digest]
            self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache if it changed (atomic; the last writer of concurrent builds wins).

        Entries not used by this build are dropped once they outnumber the used ones, so files
        deleted or replaced over time do not grow the cache forever.
        """
        if not self._dirty or self.path is None or self._entries is None:
            return
        if len(self._entries) > 2 * len(self._seen) + 1000:
            self._entries = {k: v for k, v in self._entries.items() if k in self._seen}
        import tempfile

        folder = os.path.dirname(self.path) or "."
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".stat-")
        with os.fdopen(fd, "w") as f:
            json.dump(self._entries, f, separators=(",", ":"))
        os.replace(tmp, self.path)
        self._dirty = False


class BuildContext:
    """A context directory seen through its .dockerignore."""

    def __init__(self, root: str | os.PathLike, ignore: DockerIgnore | None = None,
                 stat_cache: StatCache | None = None) -> None:
        self.root = os.path.realpath(root)
        self.ignore = ignore or DockerIgnore()
        self.stat_cache = stat_cache or StatCache(None)

    def glob(self, pattern: str) -> list[str]:
        """Included context paths matching a cleaned source pattern, walking only the
        directories the pattern can reach (below its literal prefix, to its depth)."""
        parts = pattern.split("/")
        fixed = 0
        while fixed < len(parts) and not _GLOB_CHARS & set(parts[fixed]):
            fixed += 1
        under = "/".join(parts[:fixed])
        if under and not os.path.isdir(os.path.join(self.root, under)):
            return []
        depth = None if "**" in pattern else len(parts) - fixed
        regex = compile_pattern(pattern)
        return [path for path, _ in walk_context(self.root, self.ignore, under=under,
                                                 max_depth=depth) if regex.match(path)]

    def source_path(self, src: str) -> str:
        """Clean a COPY source into a context-relative path; refuse one that leaves the context."""
        rel = posixpath.normpath("/" + src).lstrip("/") if src.startswith("/") else \
            posixpath.normpath(src)
        if rel == ".." or rel.startswith("../"):
            raise BuildError(f"{src!r} is outside the build context: paths may not use '../'")
        return "" if rel == "." else rel

    def select(self, sources: list[str]) -> list[tuple[str, str]]:
        """Each source (globs expanded) as (context-relative path, name in the destination).

        A symlinked source is followed (inside the context only) but keeps its own name.
        """
        selected: list[tuple[str, str]] = []
        for src in sources:
            rel = self.source_path(src)
            if _GLOB_CHARS & set(rel):
                hits = self.glob(rel)
                if not hits:
                    raise BuildError(f"no source files were specified: {src!r} matches nothing"
                                     " in the build context")
                selected.extend((self._follow(p, src), posixpath.basename(p)) for p in hits)
                continue
            if rel and self.ignore.matches(rel):
                raise BuildError(f"{src!r} not found: excluded by .dockerignore")
            selected.append((self._follow(rel, src), posixpath.basename(rel)))
        return selected

    def _follow(self, rel: str, src: str) -> str:
        full = os.path.join(self.root, rel) if rel else self.root
        real = os.path.realpath(full)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise BuildError(f"{src!r} is a symlink that points outside the build context"
                             f" ({os.readlink(full) if os.path.islink(full) else real})")
        if not os.path.lexists(real):
            raise BuildError(f"{src!r} not found in the build context")
        return os.path.relpath(real, self.root) if real != self.root else ""

    def entries(self, sources: list[str], dest: str, *, dest_is_dir: Callable[[str], bool],
                extract_archives: bool = False) -> list[CopyEntry]:
        """What `COPY sources dest` writes, with Docker's destination rules.

        `dest` is absolute; a trailing `/` (or an existing directory, asked through
        dest_is_dir) means "into"; several sources need a directory destination.
        """
        selected = self.select(sources)
        into = dest.endswith("/")
        dest_path = posixpath.normpath(dest)
        if len(selected) > 1 and not into:
            raise BuildError(f"when copying several sources ({', '.join(sources)}), the"
                             f" destination must be a directory and end with a '/': {dest!r}")
        out: list[CopyEntry] = []
        for rel, name in selected:
            full = os.path.join(self.root, rel) if rel else self.root
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                base = dest_path.rstrip("/") + "/"
                cut = len(rel) + 1 if rel else 0
                out.extend(self._entry(sub, base + sub[cut:], sub_st)
                           for sub, sub_st in walk_context(self.root, self.ignore, under=rel))
                continue
            if into or dest_is_dir(dest_path):
                target = posixpath.join(dest_path, name)
            else:
                target = dest_path
            entry = self._entry(rel, target, st)
            if extract_archives and entry.kind == "file" and _is_archive(entry.source or ""):
                entry.extract, entry.dest = True, dest_path
            out.append(entry)
        return out

    def _entry(self, rel: str, dest: str, st: os.stat_result) -> CopyEntry:
        full = self.root + "/" + rel
        mode = st.st_mode
        base = CopyEntry(dest=dest, kind="file", mode=mode & 0o7777, uid=st.st_uid,
                         gid=st.st_gid, mtime=st.st_mtime)
        if stat.S_ISREG(mode):
            base.source, base.stat = full, st
        elif stat.S_ISDIR(mode):
            base.kind = "dir"
        elif stat.S_ISLNK(mode):
            base.kind, base.link = "symlink", os.readlink(full)
        else:
            raise BuildError(f"{rel!r} in the build context is not a file, directory or symlink")
        return base

    def checksum(self, entries: Iterable[CopyEntry]) -> str:
        """sha256 over what the entries write: names, kinds, modes, owners, links, content."""
        digest = self.stat_cache.digest
        lines = []
        for e in entries:
            if e.source is not None:
                try:
                    content = digest(e.source, e.stat or os.stat(e.source))
                except OSError as exc:
                    raise BuildError(f"cannot read {e.source!r} in the build context:"
                                     f" {exc.strerror}") from None
            elif e.data is not None:
                content = sha256(e.data).hexdigest()
            else:
                content = ""
            lines.append(f"{e.dest}\0{e.kind}\0{e.mode:o}\0{e.uid}\0{e.gid}\0{e.link}\0"
                         f"{int(e.extract)}\0{content}\n")
        return sha256("".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _is_archive(path: str) -> bool:
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def entries_from_tar(data: bytes, src_path: str, dest: str, *, into: bool,
                     dest_is_dir: Callable[[str], bool]) -> list[CopyEntry]:
    """What `COPY --from=... src_path dest` writes, given the source image's tar of src_path
    (Docker's get_archive layout: members named from the basename of src_path)."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        if not members:
            raise BuildError(f"{src_path!r} not found in the source image")
        top = members[0]
        dest_path = posixpath.normpath(dest)
        out: list[CopyEntry] = []
        if not top.isdir():
            target = posixpath.join(dest_path, top.name) if into or dest_is_dir(dest_path) \
                else dest_path
            return [_entry_from_member(tar, top, target)]
        for m in members[1:]:
            rel = posixpath.normpath(m.name)
            tail = rel.split("/", 1)[1] if "/" in rel else ""
            if not tail or tail.startswith("../"):
                continue
            out.append(_entry_from_member(tar, m, posixpath.join(dest_path, tail)))
        return out


def _entry_from_member(tar: tarfile.TarFile, m: tarfile.TarInfo, dest: str) -> CopyEntry:
    entry = CopyEntry(dest=dest, kind="file", mode=m.mode & 0o7777, uid=m.uid, gid=m.gid,
                      mtime=m.mtime)
    if m.isdir():
        entry.kind = "dir"
    elif m.issym():
        entry.kind, entry.link = "symlink", m.linkname
    elif m.isfile() or m.islnk():
        f = tar.extractfile(m)
        entry.data = f.read() if f else b""
    else:
        raise BuildError(f"{m.name!r} in the source image is a device or fifo: not copied")
    return entry


def write_tar(entries: Iterable[CopyEntry], out: IO[bytes], *,
              chown: tuple[int, int] | None = None, chmod: int | None = None) -> None:
    """Write the entries as a tar rooted at `/` (names without the leading slash).

    Owners are 0:0 unless chown is given (as Docker's COPY); chmod replaces every mode.
    Archives marked `extract` are unpacked in place, their member names kept under `dest`.
    """
    import io
    import tarfile

    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            if e.extract:
                _add_archive(tar, e, chown)
                continue
            info = tarfile.TarInfo(e.dest.lstrip("/"))
            info.mode = chmod if chmod is not None else e.mode
            info.uid, info.gid = chown or (0, 0)
            info.mtime = int(e.mtime)
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e.link
                tar.addfile(info)
            elif e.data is not None:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                assert e.source is not None
                with open(e.source, "rb") as f:
                    info.size = os.fstat(f.fileno()).st_size
                    tar.addfile(info, f)


def _add_archive(tar: tarfile.TarFile, e: CopyEntry, chown: tuple[int, int] | None) -> None:
    import io
    import tarfile

    prefix = e.dest.lstrip("/")
    assert e.source is not None
    with tarfile.open(e.source) as src:
        for m in src:
            name = posixpath.normpath(m.name.lstrip("/"))
            if name == ".." or name.startswith("../"):
                raise BuildError(f"archive {e.source!r}: member {m.name!r} escapes its root")
            if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                continue
            info = tarfile.TarInfo(posixpath.join(prefix, name) if name != "." else prefix)
            info.mode, info.mtime, info.type = m.mode, m.mtime, m.type
            info.uid, info.gid = chown or (m.uid, m.gid)
            if m.issym():
                info.linkname = m.linkname
                tar.addfile(info)
            elif m.isdir():
                tar.addfile(info)
            else:
                f = src.extractfile(m)
                data = f.read() if f else b""
                info.type, info.size = tarfile.REGTYPE, len(data)
                tar.addfile(info, io.BytesIO(data))
