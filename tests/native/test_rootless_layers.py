"""Layers made and unpacked by a throwaway non-root user (with and without subordinate ids):
opaque directories in a user namespace (user.overlay.opaque, read by overlay's `userxattr`),
and image tars holding what a user namespace cannot reproduce (owners it does not map,
device nodes), which unpack with notes instead of failing."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

import pytest_isobox.builder.builder  # noqa: F401 - loaded before the user's child forks
from pytest_isobox.engine import ContainerSpec
from pytest_isobox.images import whiteouts
from pytest_isobox.native.engine import NativeEngine
from tests.native.rootless_users import ThrowawayUser, run_as, throwaway_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates throwaway users: needs root")


@pytest.fixture(scope="module", params=[True, False], ids=["subids", "single-id"])
def user(request: pytest.FixtureRequest) -> ThrowawayUser:
    with throwaway_user(subids=request.param, rootfs=True) as made:
        yield made


def _run(engine: NativeEngine, image: str, script: str) -> tuple[int, str]:
    state = engine.run(ContainerSpec(image=image, command=["sh", "-c", script],
                                     network_mode="none"))
    code = engine.wait(state.id)
    out = b"".join(data for _, data in engine.logs(state.id)).decode()
    engine.remove(state.id)
    return code, out


def _layer_entries(store: object, diff_id: str) -> list[tuple[str, dict]]:
    with tarfile.open(store.blobs.path(diff_id)) as tar:  # type: ignore[attr-defined]
        return [(m.name, dict(m.pax_headers)) for m in tar]


def _opaque_xattrs(path: Path) -> dict[str, bytes]:
    return {n: os.getxattr(path, n) for n in os.listxattr(path) if whiteouts.is_overlay_xattr(n)}


def _recreated_directory(rootfs: str) -> dict:
    """A directory with content, removed and made again by the next step (overlay marks it
    opaque in the upper dir), then built on by a third step that reads it."""
    found: dict = {}
    with NativeEngine() as engine:
        engine.import_rootfs(rootfs, "bb:latest")
        context = Path(rootfs).parent / "ctx-opaque"
        context.mkdir(exist_ok=True)
        (context / "Dockerfile").write_text(
            "FROM bb\n"
            "RUN mkdir -p /tmp/d && echo old > /tmp/d/old\n"
            "RUN rm -rf /tmp/d; mkdir -p /tmp/d && echo new > /tmp/d/new\n"
            "RUN ls /tmp/d > /listing\n")
        built = engine.build(context, tag="recreated:1")
        found["run"] = _run(engine, built, "ls /tmp/d; cat /listing")
        store = engine.images_store.store
        image = store.resolve(built)
        found["entries"] = _layer_entries(store, image.diff_ids[-2])
        lower = engine.images_store.layer_dirs(image.id)[-2]
        found["lower_xattrs"] = engine._rootless.userns.run(_opaque_xattrs, lower / "tmp" / "d")
    return found


def test_directory_recreated_in_a_later_step(user: ThrowawayUser) -> None:
    found = run_as(user, _recreated_directory, str(user.home / "rootfs"))
    assert found["run"] == (0, "new\nnew\n")
    names = [name for name, _ in found["entries"]]
    assert f"tmp/d/{whiteouts.OPAQUE_MARKER}" in names  # the upper dir's user.overlay.opaque
    assert names.index("tmp/d") < names.index(f"tmp/d/{whiteouts.OPAQUE_MARKER}")
    leaked = [(name, key) for name, headers in found["entries"] for key in headers
              if "overlay." in key]
    assert leaked == []  # overlay's private xattrs never become layer xattrs
    assert found["lower_xattrs"] == {whiteouts.USER_OPAQUE_XATTR: b"y"}


def _image_tar(rootfs: Path, path: Path) -> None:
    """An image tar as root would make it: the busybox rootfs (root's), files of nobody,
    device nodes, a fifo and a whiteout (a 0:0 device once unpacked, which a user namespace
    may make)."""

    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        return info

    with tarfile.open(path, "w") as tar:
        tar.add(rootfs, arcname=".", filter=as_root)
        for name, kind, uid in (("home/nobody", tarfile.DIRTYPE, 65534),
                                ("opt/dev", tarfile.DIRTYPE, 0),
                                ("opt/dev/null", tarfile.CHRTYPE, 0),
                                ("opt/dev/sda", tarfile.BLKTYPE, 0),
                                ("opt/dev/fifo", tarfile.FIFOTYPE, 0)):
            info = tarfile.TarInfo(name)
            info.type, info.uid, info.gid, info.mode = kind, uid, uid, 0o755
            if kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            elif kind == tarfile.BLKTYPE:
                info.devmajor, info.devminor = 8, 0
            tar.addfile(info)
        data = b"nobody's\n"
        info = tarfile.TarInfo("home/nobody/note")
        info.size, info.uid, info.gid, info.mode = len(data), 65534, 65534, 0o644
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("home/nobody/.wh.gone")
        info.uid = info.gid = 65534
        tar.addfile(info, io.BytesIO(b""))


def _listing(directory: Path) -> dict[str, str]:
    kinds = {}
    for name in sorted(os.listdir(directory)):
        st = os.stat(directory / name, follow_symlinks=False)
        kinds[name] = ("whiteout" if whiteouts.is_overlay_whiteout(st) else
                       "fifo" if stat.S_ISFIFO(st.st_mode) else "other")
    return kinds


def _import_foreign_image(tar_path: str) -> dict:
    with NativeEngine() as engine:
        image_id = engine.import_rootfs(tar_path, "foreign:1")
        store = engine.images_store.store
        image = store.resolve(image_id)
        marker = json.loads((store.layers.root / image.chain_ids[0].removeprefix("sha256:")
                             / "layer.json").read_text())
        lower = engine.images_store.layer_dirs(image.id)[0]
        ns = engine._rootless.userns
        run = _run(engine, image_id, "stat -c '%u:%g %n' /home/nobody/note; "
                   "cat /home/nobody/note; test -p /opt/dev/fifo && echo fifo")
        return {"run": run, "notes": marker.get("notes", []),
                "dev": ns.run(_listing, lower / "opt" / "dev"),
                "nobody": ns.run(_listing, lower / "home" / "nobody")}


def test_image_tar_with_unmapped_owners_and_device_nodes(user: ThrowawayUser) -> None:
    tar_path = user.home / "foreign.tar"
    _image_tar(user.home / "rootfs", tar_path)
    os.chown(tar_path, user.uid, user.gid)
    found = run_as(user, _import_foreign_image, str(tar_path))
    code, out = found["run"]
    assert code == 0, out
    owner = "65534:65534" if user.subids else "0:0"
    assert out.splitlines() == [f"{owner} /home/nobody/note", "nobody's", "fifo"]
    assert found["dev"] == {"fifo": "fifo"}  # the devices skipped, not the fifo
    assert found["nobody"] == {"gone": "whiteout", "note": "other"}
    notes = found["notes"]
    assert any(note.startswith("device nodes skipped") and "opt/dev/null, opt/dev/sda" in note
               for note in notes), notes
    given = [note for note in notes if "given to root" in note]
    assert given == ([] if user.subids else
                     [("owners this user namespace does not map were given to root: "
                       "uids 65534, gids 65534")])
