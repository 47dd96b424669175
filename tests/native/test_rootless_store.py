"""Prerequisites of rootless mode, and stores never shared between root and a user."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from pytest_isobox.engine import EngineUnavailable
from pytest_isobox.native.rootless import store
from pytest_isobox.native.rootless.idmap import IdMapping, IdRange
from pytest_isobox.native.rootless.prerequisites import check_rootless, missing_prerequisite
from tests.native.rootless_users import ThrowawayUser, run_as, throwaway_user

FULL = IdMapping((IdRange(0, 1000, 1), IdRange(1, 100000, 65536)),
                 (IdRange(0, 1000, 1), IdRange(1, 100000, 65536)))
SINGLE = IdMapping((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),), "note")


def _sysctls(tmp_path: Path, **values: str) -> Path:
    for name, value in values.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return tmp_path


@pytest.mark.parametrize(("sysctls", "expected"), [
    ({"user__max_user_namespaces": "0"}, "user.max_user_namespaces=0"),
    ({"kernel__unprivileged_userns_clone": "0"}, "kernel.unprivileged_userns_clone=1"),
    ({"kernel__apparmor_restrict_unprivileged_userns": "1"},
     "kernel.apparmor_restrict_unprivileged_userns=0"),
])
def test_each_kernel_switch_is_named(tmp_path: Path, sysctls: dict, expected: str) -> None:
    found = missing_prerequisite(_sysctls(tmp_path, **sysctls), "6.18.0", "nodev\toverlay\n")
    assert found is not None and expected in found


def test_old_kernel_and_missing_overlay(tmp_path: Path) -> None:
    assert "5.10.0 is too old" in missing_prerequisite(tmp_path, "5.10.0", "nodev\toverlay\n")
    assert "overlayfs" in missing_prerequisite(tmp_path, "6.1.0", "nodev\tproc\n")


def test_this_machine_allows_rootless() -> None:
    """Kernel 6.18, user.max_user_namespaces > 0, neither Debian's nor Ubuntu's switch."""
    assert missing_prerequisite() is None
    check_rootless(FULL)
    check_rootless(SINGLE)


def test_store_marker_claims_a_mapping_and_refuses_another(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store.claim(home, FULL)
    store.claim(home, FULL)
    with pytest.raises(EngineUnavailable, match="subordinate ids changed"):
        store.claim(home, SINGLE)
    (home / store.MARKER).write_text("{")
    with pytest.raises(EngineUnavailable, match="damaged"):
        store.claim(home, FULL)


@pytest.fixture(scope="module")
def user() -> ThrowawayUser:
    if os.geteuid() != 0:
        pytest.skip("creates throwaway users: needs root")
    with throwaway_user(subids=True) as made:
        yield made


def test_root_refuses_a_users_store(user: ThrowawayUser) -> None:
    home = user.home / ".cache" / "isobox"
    home.mkdir(parents=True)
    os.chown(home, user.uid, user.gid)
    with pytest.raises(EngineUnavailable, match=f"belongs to uid {user.uid}"):
        store.check_owner(home)
    assert list(home.iterdir()) == []  # nothing was written


def _check(path: str) -> str:
    try:
        store.check_owner(Path(path))
    except EngineUnavailable as exc:
        return str(exc)
    return "accepted"


def test_user_refuses_roots_store_and_takes_its_own(user: ThrowawayUser,
                                                    tmp_path: Path) -> None:
    root_store = Path(tempfile.mkdtemp(prefix="isobox-root-store-", dir="/tmp"))
    try:
        os.chmod(root_store, 0o777)  # even writable, it is not the user's
        assert "belongs to uid 0, not to you" in run_as(user, _check, str(root_store))
        assert "not reachable" in run_as(user, _check, str(tmp_path / "x"))  # under 0700
        assert run_as(user, _check, str(user.home)) == "accepted"
    finally:
        shutil.rmtree(root_store)
