"""Docker's archive API: tar streams into and out of a container's filesystem, running
or not (then its overlay is mounted in a short-lived private mount namespace)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from pytest_isobox.engine import ContainerError, InvalidSpec
from pytest_isobox.native.state import ContainerDir


class ArchivesRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    def put_archive(self, container: str, path: str, data: bytes | IO[bytes]) -> None:
        """Extract a tar into directory `path` of the container; never outside its root."""
        from pytest_isobox.images.tarsafe import extract_into

        payload = data if isinstance(data, bytes) else data.read()
        self._in_rootfs(self._find(container),
                        lambda root: extract_into(root, path, io.BytesIO(payload)))

    def get_archive(self, container: str, path: str) -> bytes:
        """A tar of `path` in the container, named from its basename (`docker cp`)."""
        from pytest_isobox.images.tarsafe import archive_path

        return self._in_rootfs(self._find(container), lambda root: archive_path(root, path))

    def _in_rootfs(self, cdir: ContainerDir, action: Callable[[Path], bytes | None]) -> bytes:
        """Run `action(root)` on the container's root: the live one of a running container,
        else its overlay mounted in a short-lived private mount namespace (a forked child)."""
        state = cdir.read_state()
        fd = self._container_pidfd(state)
        if fd is not None:
            os.close(fd)
            root = Path(f"/proc/{state['pid']}/root")
            if self._rootless is not None:  # files of mapped ids: handled as root inside
                return self._rootless.run(action, root) or b""
            return action(root) or b""
        from pytest_isobox.native import linux, planrunner, startplan
        from pytest_isobox.native.forked import call_in_child

        plan = self._plan(cdir, tty=False)
        self._join_pool()  # no fork while another thread works

        def mounted() -> None:  # in the child, before the action
            if self._rootless is not None:
                self._rootless.enter()
            linux.unshare(linux.CLONE_NEWNS)
            planrunner.execute(startplan.overlay_steps(plan))

        try:
            return call_in_child(lambda: action(Path(plan.rootfs)) or b"", prepare=mounted)
        except (InvalidSpec, ContainerError):
            raise
        except Exception as exc:  # noqa: BLE001 - the child's failure, as the engine's error
            raise ContainerError(str(exc)) from None

