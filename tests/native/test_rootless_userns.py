"""The user namespace of rootless containers: id maps, file ownership, overlay, devices.

Pure parsing is tested directly; everything else runs as a throwaway user (with and without
subordinate ids) on the real kernel.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pytest_isobox.engine import InvalidSpec
from pytest_isobox.native import linux, mounts, planrunner, startplan
from pytest_isobox.native.rootless import is_rootless
from pytest_isobox.native.rootless import mounts as rootless_mounts
from pytest_isobox.native.rootless.idmap import (
    IdRange,
    current_mapping,
    mapping_for,
    parse_subordinate,
)
from pytest_isobox.native.rootless.userns import UserNamespace
from tests.native.rootless_users import (
    ThrowawayUser,
    process_gone,
    run_as,
    runtime_dir,
    throwaway_user,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creates throwaway users: needs root")


# ---------------------------------------------------------------- pure logic

def test_subordinate_ranges_by_name_or_uid_and_other_users_ignored() -> None:
    text = "alice:100000:65536\n# comment\nbob:x:y\n1234:200000:1000\nalice:300000:10\n"
    assert parse_subordinate(text, "alice", 1000) == [(100000, 65536), (300000, 10)]
    assert parse_subordinate(text, "carol", 1234) == [(200000, 1000)]
    assert parse_subordinate(text, "dave", 99) == []


def test_malformed_entry_names_file_and_line() -> None:
    with pytest.raises(InvalidSpec, match=r"/etc/subuid:2: malformed entry 'alice:1:0'"):
        parse_subordinate("x:1:1\nalice:1:0\n", "alice", 1000, "/etc/subuid")


def test_mapping_puts_the_user_at_root_and_subordinates_above(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("alice:100000:65536\n")
    (tmp_path / "subgid").write_text("alice:200000:65536\n")
    m = mapping_for(1000, 1001, "alice", subuid=tmp_path / "subuid", subgid=tmp_path / "subgid")
    assert m.uids == (IdRange(0, 1000, 1), IdRange(1, 100000, 65536))
    assert m.gids == (IdRange(0, 1001, 1), IdRange(1, 200000, 65536))
    assert not m.single and m.note == ""
    assert m.host_uid(65534) == 165533 and m.host_uid(0) == 1000 and m.host_uid(70000) is None


def test_without_subordinate_ids_one_id_and_a_note(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("alice:100000:65536\n")
    (tmp_path / "subgid").write_text("")
    m = mapping_for(1000, 1000, "alice", subuid=tmp_path / "subuid", subgid=tmp_path / "subgid")
    assert m.single and m.uids == (IdRange(0, 1000, 1),)
    assert "only one id is mapped" in m.note and "usermod --add-subuids" in m.note


def test_rootless_unless_root_and_forcing_wins() -> None:
    assert is_rootless() == (os.geteuid() != 0)
    assert is_rootless(True) and not is_rootless(False)


# ---------------------------------------------------------------- as a throwaway user

@pytest.fixture(scope="module", params=[True, False], ids=["subids", "single-id"])
def user(request: pytest.FixtureRequest) -> ThrowawayUser:
    if os.geteuid() != 0:
        pytest.skip("creates throwaway users: needs root")
    with throwaway_user(subids=request.param) as made:
        yield made


def _ownership(workdir: str) -> dict:
    """Inside the namespace: chown a file to nobody (65534); the owner the host sees."""
    mapping = current_mapping()
    path = Path(workdir) / "owned-by-nobody"
    with UserNamespace(mapping, runtime_dir()) as ns:
        def inside() -> dict:
            path.write_text("x")
            try:
                os.chown(path, 65534, 65534)
                chown = "ok"
            except OSError as exc:
                chown = exc.errno
            return {"uid": os.getuid(), "chown": chown, "owner_inside": path.stat().st_uid,
                    "setgroups": rootless_mounts.setgroups_allowed()}
        found = ns.run(inside)
    found["owner_outside"] = path.stat().st_uid
    found["single"] = mapping.single
    found["expected_outside"] = mapping.host_uid(65534)
    found["holder_gone"] = process_gone(ns.pid)  # its last user closed: the holder ends
    return found


@needs_root
def test_root_inside_and_image_owners_kept_with_subordinate_ids(user: ThrowawayUser) -> None:
    found = run_as(user, _ownership, str(user.home))
    assert found["uid"] == 0
    if user.subids:
        assert found["chown"] == "ok" and found["owner_inside"] == 65534
        assert found["owner_outside"] == found["expected_outside"] >= 100000
        assert found["setgroups"]
    else:
        assert found["single"]
        assert found["chown"] == 22  # EINVAL: 65534 has no host id in a single-id namespace
        assert found["owner_outside"] == user.uid
        assert not found["setgroups"]
    assert found["holder_gone"]


def _overlay_and_devices(workdir: str) -> dict:
    """Layers made inside the namespace (whiteout, user.overlay.opaque) and one made by root
    (trusted.overlay.opaque), overlaid with `userxattr`; device nodes bound into a tmpfs."""
    base = Path(workdir)
    with UserNamespace(current_mapping(), runtime_dir()) as ns:
        def inside() -> dict:
            found: dict = {}
            lower, top = base / "lower", base / "top"
            for d in (lower / "gone-dir", lower / "opaque", top / "opaque"):
                d.mkdir(parents=True)
            (lower / "deleted").write_text("old")
            (lower / "opaque" / "hidden").write_text("old")
            (lower / "root-opaque").mkdir()
            (lower / "root-opaque" / "leaked").write_text("old")
            (top / "opaque" / "new").write_text("new")
            os.mknod(top / "deleted", stat.S_IFCHR, os.makedev(0, 0))  # a whiteout
            os.setxattr(top / "opaque", rootless_mounts.OPAQUE_XATTR, b"y")
            upper, work, merged = base / "upper", base / "work", base / "merged"
            for d in (upper, work, merged):
                d.mkdir()
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            data = rootless_mounts.overlay_options(
                [str(top), str(base / "root-made"), str(lower)], str(upper), str(work))
            linux.mount("overlay", str(merged), "overlay", 0, data)
            found["listing"] = sorted(os.listdir(merged))
            found["opaque"] = sorted(os.listdir(merged / "opaque"))
            found["root_opaque"] = sorted(os.listdir(merged / "root-opaque"))
            dev = base / "dev"
            dev.mkdir()
            linux.mount("tmpfs", str(dev), "tmpfs", linux.MS_NOSUID, "mode=755")
            try:
                os.mknod(dev / "try-null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
                found["mknod"] = "ok"
            except OSError as exc:
                found["mknod"] = exc.errno
            planrunner.execute([("root", str(base)), *startplan.device_steps(rootless=True)])
            with open(dev / "null", "w") as f:
                f.write("discarded")
            with open(dev / "zero", "rb") as f:
                found["zero"] = f.read(4)
            found["devices"] = sorted(os.listdir(dev))
            return found
        return ns.run(inside)


@needs_root
def test_overlay_with_userxattr_and_bound_devices(user: ThrowawayUser) -> None:
    work = user.home / "ovl"
    root_made = work / "root-made"
    (root_made / "root-opaque").mkdir(parents=True)
    os.setxattr(root_made / "root-opaque", "trusted.overlay.opaque", b"y")  # as root unpacks
    (root_made / "root-opaque" / "below").mkdir()
    os.chown(work, user.uid, user.gid)
    found = run_as(user, _overlay_and_devices, str(work))
    assert found["listing"] == ["gone-dir", "opaque", "root-opaque"]  # `deleted` whited out
    assert found["opaque"] == ["new"]  # user.overlay.opaque hides the lower `hidden`
    # a layer unpacked by root marks opaque dirs with trusted.* xattrs, which overlay in a
    # user namespace does not read: what that layer hid shows through. Hence a rootless
    # store of its own, unpacked in the namespace.
    assert found["root_opaque"] == ["below", "leaked"]
    assert found["mknod"] == 1  # EPERM: devices cannot be made in a user namespace ...
    assert found["zero"] == b"\0\0\0\0"  # ... so the host's are bound instead
    assert found["devices"] == sorted([*mounts.DEVICES, *mounts.DEV_SYMLINKS])
