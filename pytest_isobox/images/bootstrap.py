"""`isobox bootstrap debian:bookworm`: a Debian base image with no registry at all.

debootstrap installs the suite from the machine's own apt mirror (taken from its apt
sources, `/etc/apt/sources.list` and `sources.list.d/*.list|*.sources`, never a built-in
address) into a temp dir of the store; the tree is imported as one layer with Docker's
Debian defaults (`Cmd ["bash"]`) and tagged. The image is cached by its inputs (suite,
variant, packages, mirror, architecture): a second call with the same inputs runs nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_isobox.engine import InvalidSpec, IsoboxError
from pytest_isobox.images import config as oci
from pytest_isobox.images.atomic import remove_path, temp_path, write_file_atomic
from pytest_isobox.images.reference import parse_reference

if TYPE_CHECKING:
    from pytest_isobox.images.store import ImageStore

APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_D = Path("/etc/apt/sources.list.d")
VARIANTS = ("minbase", "buildd", "fakechroot", "")
_DISTRIBUTIONS = ("debian",)


def apt_sources(sources: Path = APT_SOURCES, parts: Path = APT_SOURCES_D
                ) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every `deb` entry of the machine's apt sources, in apt's order."""
    found: list[tuple[str, list[str]]] = []
    files = [sources] if sources.is_file() else []
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            found += _deb822(text)
            continue
        for line in text.splitlines():
            words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
            if words[:1] == ["deb"] and len(words) >= 3:  # deb [options] URI suite comps
                found.append((words[1], [words[2]]))
    return found


def _deb822(text: str) -> list[tuple[str, list[str]]]:
    found = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        for uri in fields.get("uris", "").split():
            found.append((uri, fields.get("suites", "").split()))
    return found


def mirror_for(suite: str, sources: list[tuple[str, list[str]]] | None = None) -> str:
    """The apt mirror that serves `suite` here: an entry listing the suite itself, else the
    first entry of a plain release suite (not -security/-updates/-backports)."""
    entries = apt_sources() if sources is None else sources
    for uri, suites in entries:
        if suite in suites:
            return uri
    for uri, suites in entries:
        if any("-" not in s and "/" not in s for s in suites):
            return uri
    raise IsoboxError(f"bootstrap {suite}: no Debian mirror in {APT_SOURCES} or "
                      f"{APT_SOURCES_D}/ (add a 'deb' entry)")


def _cache_key(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def bootstrap(store: ImageStore, name: str, *, variant: str = "minbase",
              include: list[str] | None = None, tag: str | None = None,
              log: Callable[[str], None] | None = None) -> str:
    """The image of `name` (`debian:<suite>`) made by debootstrap; returns its id, tagged
    `tag` (default `name`). Cached by its inputs: a second call does nothing."""
    ref = parse_reference(name)
    distribution = ref.familiar_name
    if distribution not in _DISTRIBUTIONS or not ref.tag or ref.digest:
        raise InvalidSpec(f"bootstrap {name!r}: expected debian:<suite>, e.g. debian:bookworm")
    if variant not in VARIANTS:
        raise InvalidSpec(f"bootstrap {name!r}: unknown variant {variant!r} (expected one of "
                          f"{', '.join(v for v in VARIANTS if v)})")
    suite = ref.tag
    packages = sorted({p.strip() for p in include or () if p.strip()})
    mirror = mirror_for(suite)
    program = shutil.which("debootstrap")
    if program is None:
        raise IsoboxError("bootstrap: debootstrap is not installed (apt-get install debootstrap)")
    inputs = {"suite": suite, "variant": variant, "include": packages, "mirror": mirror,
              "arch": oci.go_arch()}
    key = _cache_key(inputs)
    target_tag = tag or f"{distribution}:{suite}"
    records = store.home / "bootstrap"
    record = records / key
    if record.is_file():
        image_id = record.read_text().strip()
        if store.index.has(image_id):
            store.tag(image_id, target_tag)
            return image_id
    with store.producing(f"bootstrap:{key}"):
        if record.is_file() and store.index.has(image_id := record.read_text().strip()):
            store.tag(image_id, target_tag)
            return image_id
        image_id = _make(store, program, inputs, name, log)
        records.mkdir(parents=True, exist_ok=True)
        write_file_atomic(record, image_id.encode(), store.home / "tmp")
    store.tag(image_id, target_tag)
    return image_id


def _make(store: ImageStore, program: str, inputs: dict, name: str,
          log: Callable[[str], None] | None) -> str:
    root = temp_path(store.home / "tmp", "bootstrap")
    argv = [program]
    if inputs["variant"]:
        argv.append(f"--variant={inputs['variant']}")
    if inputs["include"]:
        argv.append(f"--include={','.join(inputs['include'])}")
    argv += [inputs["suite"], str(root), inputs["mirror"]]
    try:
        if log:
            log(f"bootstrap {name}: {' '.join(argv)}")
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = (done.stdout + done.stderr).strip().splitlines()
            last = next((ln for ln in reversed(lines) if ln.startswith(("E:", "W:"))),
                        lines[-1] if lines else "")
            raise IsoboxError(f"bootstrap {name}: debootstrap failed ({done.returncode}): "
                              f"{last} (log: {root}/debootstrap/debootstrap.log)")
        _tidy(root)
        base = store.import_rootfs(root, None)
        config = {"Env": [oci.DEFAULT_PATH_ENV], "Cmd": ["bash"]}
        return store.commit(base, None, config,
                            f"isobox bootstrap {name} from {inputs['mirror']}",
                            comment=json.dumps(inputs, sort_keys=True))
    finally:
        _unmount_below(root)
        remove_path(root)


def _tidy(root: Path) -> None:
    """What Docker's Debian images leave out: downloaded .debs, apt lists, device nodes (the
    container gets its own /dev), logs of the install."""
    for folder in ("var/cache/apt/archives", "var/lib/apt/lists", "dev", "var/log"):
        path = root / folder
        if not path.is_dir():
            continue
        for entry in path.iterdir():
            if entry.name in ("partial", "lock"):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    (root / "etc" / "hostname").write_text("localhost\n")
    resolv = root / "etc" / "resolv.conf"
    if resolv.is_file() or resolv.is_symlink():
        resolv.unlink()


def _unmount_below(root: Path) -> None:
    """debootstrap mounts proc and sys in the target; a failed run may leave them."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(root) + "/"
    for line in reversed(mounts):
        point = line.split()[1].replace("\\040", " ")
        if point.startswith(prefix):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
