"""A rootless store, as a throwaway user: layers unpacked in the user namespace keep their
owners (as subordinate ids on the host), and removing them works although the user alone
could not."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pytest_isobox.native.rootless.idmap import current_mapping
from pytest_isobox.native.rootless.images import open_store
from pytest_isobox.native.rootless.userns import UserNamespace
from tests.native.rootless_users import ThrowawayUser, run_as, runtime_dir, throwaway_user


@pytest.fixture(scope="module")
def user() -> ThrowawayUser:
    if os.geteuid() != 0:
        pytest.skip("creates throwaway users: needs root")
    with throwaway_user(subids=True) as made:
        yield made


def _image_tar(path: Path) -> None:
    """A root filesystem as an image tar made by root would be: files of root and nobody."""
    with tarfile.open(path, "w") as tar:
        for name, uid, mode in (("etc", 0, 0o755), ("home/nobody", 65534, 0o700)):
            info = tarfile.TarInfo(name)
            info.type, info.uid, info.gid, info.mode = tarfile.DIRTYPE, uid, uid, mode
            tar.addfile(info)
        data = b"secret of nobody\n"
        info = tarfile.TarInfo("home/nobody/note")
        info.size, info.uid, info.gid, info.mode = len(data), 65534, 65534, 0o600
        tar.addfile(info, io.BytesIO(data))


def _import(tar_path: str, home: str) -> dict:
    mapping = current_mapping()
    with UserNamespace(mapping, runtime_dir()) as ns:
        store = open_store(Path(home), ns)
        image_id = store.import_rootfs(tar_path, "owned:latest")
        diff = store.layer_dirs(image_id)[0]
        note = diff / "home" / "nobody" / "note"
        try:
            note.read_text()
            readable_outside = True
        except PermissionError:
            readable_outside = False
        return {"diff": str(diff), "expected": mapping.host_uid(65534),
                "readable_outside": readable_outside,
                "readable_inside": ns.run(note.read_text)}


def _remove(home: str) -> list[str]:
    with UserNamespace(current_mapping(), runtime_dir()) as ns:
        store = open_store(Path(home), ns)
        store.remove("owned:latest")
        store.prune()
    return os.listdir(Path(home) / "layers")


def test_image_owners_kept_and_layers_removable(user: ThrowawayUser) -> None:
    tar_path = user.home / "image.tar"
    _image_tar(tar_path)
    os.chown(tar_path, user.uid, user.gid)
    home = str(user.home / "store")
    found = run_as(user, _import, str(tar_path), home)
    diff = Path(found["diff"])
    assert (diff / "home" / "nobody" / "note").stat().st_uid == found["expected"] >= 100000
    assert (diff / "etc").stat().st_uid == user.uid  # root inside is the user
    assert not found["readable_outside"]  # another id's 0700 dir: not the user's to enter
    assert found["readable_inside"] == "secret of nobody\n"
    assert run_as(user, _remove, home) == []
