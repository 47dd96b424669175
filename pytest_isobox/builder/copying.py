"""COPY and ADD: sources, destination rules, --chown/--chmod, and what ends up in the tar.

A CopyStep is planned from the expanded words before the cache is asked (its checksum is part
of the step's key), and turned into CopyEntry values only when the step really runs.
"""

from __future__ import annotations

import posixpath

from pytest_isobox.builder.context import BuildContext, CopyEntry, entries_from_tar
from pytest_isobox.engine.errors import BuildError, ContainerError, IsoboxError
from pytest_isobox.engine.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_isobox.engine import Engine


class CopyStep(Record):
    """One COPY/ADD: `dest` is absolute and ends with `/` when it means "into a directory"."""

    _fields = ("cmd", "sources", "dest", "add", "chmod", "heredocs")

    def __init__(self, cmd: str, sources: list[str], dest: str, add: bool = False,
                 chmod: int | None = None, heredocs: dict[str, str] | None = None) -> None:
        self.cmd = cmd
        self.sources = sources
        self.dest = dest
        self.add = add
        self.chmod = chmod
        self.heredocs = {} if heredocs is None else heredocs

    @classmethod
    def plan(cls, *, cmd: str, sources: list[str], dest: str, workdir: str,
             flags: dict[str, str | None], add: bool, heredocs: dict[str, str]) -> CopyStep:
        into = dest.endswith(("/", "/.")) or dest == "."
        path = posixpath.normpath(posixpath.join(workdir, dest))
        if into and path != "/":
            path += "/"
        return cls(cmd=cmd, sources=sources, dest=path, add=add,
                   chmod=_parse_chmod(flags.get("chmod")),
                   heredocs={n: heredocs[n] for n in heredocs
                             if any(s.lstrip("<-").strip("'\"") == n for s in sources)})

    @property
    def into(self) -> bool:
        return self.dest.endswith("/")

    def _split(self) -> tuple[list[str], list[str]]:
        """Sources as (context paths, heredoc names)."""
        files, docs = [], []
        for src in self.sources:
            if src.startswith("<<"):
                docs.append(src.lstrip("<-").strip("'\""))
            else:
                files.append(src)
        return files, docs

    def _heredoc_entries(self, names: list[str], dest_is_dir: Callable[[str], bool]
                         ) -> list[CopyEntry]:
        out = []
        for name in names:
            if name not in self.heredocs:
                raise BuildError(f"{self.cmd}: no heredoc named {name!r}")
            into = self.into or len(self.sources) > 1 or dest_is_dir(self.dest.rstrip("/"))
            target = posixpath.join(self.dest, name) if into else self.dest
            out.append(CopyEntry(dest=target, kind="file", mode=0o644,
                                 data=self.heredocs[name].encode()))
        return out

    def context_checksum(self, context: BuildContext) -> str:
        """The checksum of everything this step selects from the context (part of its key)."""
        return context.checksum(self._context_entries(context, lambda _p: False))

    def _context_entries(self, context: BuildContext, dest_is_dir: Callable[[str], bool]
                         ) -> list[CopyEntry]:
        files, docs = self._split()
        if len(self.sources) > 1 and not self.into:
            raise BuildError(f"when copying several sources, the destination must be a"
                             f" directory and end with a '/': {self.dest!r}")
        entries = context.entries(files, self.dest, dest_is_dir=dest_is_dir,
                                  extract_archives=self.add) if files else []
        return entries + self._heredoc_entries(docs, dest_is_dir)

    def entries(self, context: BuildContext, engine: Engine, source_image: str | None, *,
                dest_is_dir: Callable[[str], bool]) -> list[CopyEntry]:
        """What the step writes: from the context, or from `source_image` (--from)."""
        if source_image is None:
            return self._context_entries(context, dest_is_dir)
        if len(self.sources) > 1 and not self.into:
            raise BuildError(f"when copying several sources, the destination must be a"
                             f" directory and end with a '/': {self.dest!r}")
        from pytest_isobox.engine import ContainerSpec

        spec = ContainerSpec(image=source_image, entrypoint=["/bin/true"], command=[],
                             network_mode="none")
        container = engine.create(spec).id
        try:
            out: list[CopyEntry] = []
            for src in self.sources:
                if set("*?[") & set(src):
                    raise BuildError(f"{self.cmd} --from: wildcards are not supported: {src!r}")
                path = posixpath.normpath(posixpath.join("/", src))
                try:
                    data = engine.get_archive(container, path)
                except ContainerError:
                    raise BuildError(f"{src!r} not found in the --from image") from None
                out += entries_from_tar(data, path, self.dest, into=self.into,
                                        dest_is_dir=dest_is_dir)
            return out
        finally:
            try:
                engine.remove(container, force=True)
            except IsoboxError:
                pass


def _parse_chmod(value: str | None) -> int | None:
    if not value:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        raise BuildError(f"invalid --chmod={value!r}: expected an octal mode like 755") from None
    if not 0 <= mode <= 0o7777:
        raise BuildError(f"invalid --chmod={value!r}: out of range")
    return mode


def resolve_chown(spec: str | None, engine: Engine, container: str) -> tuple[int, int] | None:
    """`--chown=user[:group]` as (uid, gid), names looked up in the image's /etc/passwd and
    /etc/group; a user without a group uses the uid as the gid (Docker's rule)."""
    if not spec:
        return None
    user, _, group = spec.partition(":")
    uid = int(user) if user.isdigit() else _lookup(engine, container, "/etc/passwd", user, spec)
    if not group:
        return uid, uid
    gid = int(group) if group.isdigit() else _lookup(engine, container, "/etc/group", group, spec)
    return uid, gid


def _lookup(engine: Engine, container: str, path: str, name: str, spec: str) -> int:
    """The id of `name` in an /etc/passwd- or /etc/group-style file of the container."""
    try:
        data = engine.get_archive(container, path)
    except ContainerError:
        raise BuildError(f"--chown={spec}: the image has no {path} to look up {name!r}") from None
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        f = tar.extractfile(member) if member else None
        text = f.read().decode("utf-8", "replace") if f else ""
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    kind = "user" if path.endswith("passwd") else "group"
    raise BuildError(f"--chown={spec}: unable to find {kind} {name!r} in the image's {path}")
