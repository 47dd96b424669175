""".dockerignore patterns with Docker's rules (moby/patternmatcher), and the context walk.

Rules, as Docker applies them: `#` lines are comments; each pattern is trimmed, cleaned like a
path and loses a leading `/`; `*` and `?` never cross `/`, `**` crosses any number of
directories; a pattern that matches a directory excludes everything below it; `!` re-includes,
and the last matching pattern wins. Pure logic: no I/O except reading the file and walking.
"""

from __future__ import annotations

import os
import posixpath
import re

from pytest_isobox.builder.pathtext import path_text
from pytest_isobox.engine.errors import BuildError
from pytest_isobox.engine.records import FrozenRecord


class Pattern(FrozenRecord):
    """One cleaned pattern; `exclusion` is a `!` pattern (re-includes what it matches)."""

    _fields = ("text", "exclusion", "regex")

    def __init__(self, text: str, exclusion: bool, regex: re.Pattern[str]) -> None:
        self._set(text=text, exclusion=exclusion, regex=regex)

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def clean_pattern(raw: str) -> str | None:
    """A line of a .dockerignore as Docker reads it: None for comments and blank lines."""
    if raw.startswith("#"):
        return None
    text = raw.strip()
    if not text:
        return None
    invert = text.startswith("!")
    if invert:
        text = text[1:].strip()
    if text:
        text = posixpath.normpath(text)
        if len(text) > 1 and text.startswith("/"):
            text = text.lstrip("/") or "/"
    return "!" + text if invert else text


def compile_pattern(text: str) -> Pattern:
    """Turn a cleaned pattern into a matcher; BuildError names a malformed one."""
    exclusion = text.startswith("!")
    body = text[1:] if exclusion else text
    if not body:
        raise BuildError(f'.dockerignore: illegal exclusion pattern: "{text}"')
    regex = "^"
    in_class = False
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if in_class:
            in_class = ch != "]"
            regex += "\\\\" if ch == "\\" else ch
        elif ch == "*":
            if i + 1 < n and body[i + 1] == "*":
                i += 1
                if i + 1 < n and body[i + 1] == "/":
                    i += 1
                regex += ".*" if i + 1 >= n else "(.*/)?"
            else:
                regex += "[^/]*"
        elif ch == "?":
            regex += "[^/]"
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                regex += re.escape(body[i])
            else:
                regex += "\\\\"
        elif ch == "[":
            in_class = True
            regex += ch
        else:
            regex += re.escape(ch)
        i += 1
    try:
        return Pattern(text, exclusion, re.compile(regex + "$", re.DOTALL))
    except re.error as exc:
        raise BuildError(f".dockerignore: bad pattern {text!r}: {exc}") from None


class DockerIgnore:
    """An ordered list of patterns; `matches(relpath)` says whether a context path is excluded."""

    def __init__(self, patterns: list[str] | tuple[str, ...] = ()) -> None:
        cleaned = [p for p in (clean_pattern(raw) for raw in patterns) if p]
        self.patterns = [compile_pattern(p) for p in cleaned]
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> DockerIgnore:
        """Read a .dockerignore file (a missing file means no patterns)."""
        try:
            with open(path_text(path), encoding="utf-8-sig") as f:
                text = f.read()
        except FileNotFoundError:
            return cls()
        return cls(text.splitlines())

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, relpath: str) -> bool:
        """True if the context-relative path (or one of its parent directories) is excluded."""
        path = posixpath.normpath(relpath.replace(os.sep, "/")).lstrip("/")
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                for i in range(len(parents)):
                    if pattern.match("/".join(parents[: i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_include_below(self, reldir: str) -> bool:
        """Whether an exclusion pattern could re-include something under an excluded directory."""
        if not self.has_exclusions:
            return False
        prefix = reldir.rstrip("/") + "/"
        for pattern in self.patterns:
            if not pattern.exclusion:
                continue
            body = pattern.text[1:]
            literal = re.split(r"[*?\[\\]", body, maxsplit=1)[0]
            if literal.startswith(prefix) or prefix.startswith(literal) or not literal:
                return True
        return False


def ignore_file_for(context_dir: str | os.PathLike, dockerfile: str | os.PathLike | None
                    ) -> str:
    """The ignore file Docker uses: `<Dockerfile>.dockerignore` beside it if present, else the
    context's `.dockerignore` (written as pathlib writes it)."""
    if dockerfile is not None:
        specific = path_text(str(dockerfile) + ".dockerignore")
        if os.path.isfile(specific):
            return specific
    return path_text(os.path.join(context_dir, ".dockerignore"))


def context_files(
    context_dir: str | os.PathLike, patterns: DockerIgnore | list[str], *, under: str = "",
) -> list[str]:
    """Every entry of the context that is not excluded, as sorted `/`-separated relative paths.

    Directories are listed (before their contents) when they are included or hold an included
    entry; symlinks are listed, never followed. `under` limits the walk to one directory of the
    context (its entries are still named relative to the context).
    """
    return [path for path, _ in walk_context(context_dir, patterns, under=under)]


def walk_context(
    context_dir: str | os.PathLike, patterns: DockerIgnore | list[str], *, under: str = "",
    max_depth: int | None = None,
) -> list[tuple[str, os.stat_result]]:
    """As `context_files`, each path with its lstat result (one stat per entry, no more);
    `max_depth` stops the walk that many levels below `under`."""
    ignore = patterns if isinstance(patterns, DockerIgnore) else DockerIgnore(patterns)
    out: list[tuple[str, os.stat_result]] = []
    root = os.fspath(context_dir)
    under = under.strip("/")
    _walk(root + "/" + under if under else root, under, ignore, out, max_depth)
    return out


def _walk(path: str, rel: str, ignore: DockerIgnore,
          out: list[tuple[str, os.stat_result]], depth: int | None) -> None:
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)
    prefix = rel + "/" if rel else ""
    deeper = depth is None or depth > 1
    below = None if depth is None else depth - 1
    for entry in entries:
        child = prefix + entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if ignore.patterns and ignore.matches(child):
            if is_dir and deeper and ignore.may_include_below(child):
                mark = len(out)
                _walk(entry.path, child, ignore, out, below)
                if len(out) > mark:
                    out.insert(mark, (child, entry.stat(follow_symlinks=False)))
            continue
        out.append((child, entry.stat(follow_symlinks=False)))
        if is_dir and deeper:
            _walk(entry.path, child, ignore, out, below)
