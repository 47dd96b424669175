"""Images for the native engine: the OCI store (images/), builds (builder/), commits and
disk usage, and an image reference resolved into the lower dirs a container mounts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_isobox.engine import BuildStep, ImageInfo, ImageNotFound, InvalidSpec
from pytest_isobox.native.engine.support import tree_size


class ImagesRole:
    """A role of NativeEngine (see the module docstring); state lives on the facade."""

    @property
    def images_store(self) -> Any:
        if self._images is None:
            from pytest_isobox.images.store import ImageStore

            self._images = self._rootless.image_store(self.home) if self._rootless \
                else ImageStore(self.home)
        return self._images

    def build(self, context: str | Path, *, dockerfile: str | None = None,
              tag: str | None = None, buildargs: dict[str, str] | None = None,
              target: str | None = None, no_cache: bool = False, network: str | None = None,
              on_step: Callable[[BuildStep], None] | None = None,
              labels: dict[str, str] | None = None, pull: bool = False,
              on_output: Callable[[BuildStep, str], None] | None = None,
              on_note: Callable[[str], None] | None = None) -> str:
        """`pull`: FROM images are pulled again (`build --pull`) by the engine's pull policy;
        `on_note` is the docker engine's (which builder): here it is always isobox's."""
        from pytest_isobox.builder.builder import Builder

        # no reaper yet: a fully cached build makes nothing; what a step makes (a container,
        # a derived image, a pull) forks it first
        if pull:
            self.pull_policy.value = "always"
        builder = Builder(engine=self, cache_dir=self.home / "buildcache")
        return builder.build(context, dockerfile=dockerfile, tag=tag, buildargs=buildargs,
                             target=target, no_cache=no_cache, network=network, on_step=on_step,
                             labels=labels, on_output=on_output)

    def import_rootfs(self, source: str | Path, ref: str) -> str:
        self._own_resources()
        return self.images_store.import_rootfs(source, ref)

    def pull(self, ref: str, progress: Callable[[str, str, int, int], None] | None = None,
             *, platform: str | None = None) -> str:
        """Pull `ref` from its registry now (whatever the policy); returns the image id.
        `platform`: another platform's image from an index (`isobox pull --platform`)."""
        self._own_resources()
        image_id = self.images_store.pull(ref, progress or self.pull_policy.progress,
                                          platform=platform)
        self.pull_policy.pulled(ref)
        return image_id

    def bootstrap(self, name: str, *, variant: str = "minbase", include: list[str] | None = None,
                  tag: str | None = None, log: Callable[[str], None] | None = None) -> str:
        """A Debian base image made by debootstrap from this machine's apt mirror (cached
        by its inputs; see images.bootstrap); returns its id."""
        from pytest_isobox.images.bootstrap import bootstrap

        return bootstrap(self.images_store, name, variant=variant, include=include, tag=tag,
                         log=log)

    def ensure_image(self, ref: str) -> str:
        """The image id for `ref`, pulled first as the pull policy says: "missing" pulls an
        image not stored, "always" pulls once per engine (then uses the store), "never" and
        ISOBOX_OFFLINE=1 never touch the network. ImageNotFound names the image."""
        return self.pull_policy.ensure(ref, self.images_store, self.pull)

    def image_inspect(self, ref: str) -> ImageInfo:
        image = self.images_store.resolve(ref)
        return ImageInfo(image.id, image.tags, image.config, image.size,
                         image.config.get("created"))

    def image_document(self, ref: str) -> dict:
        """Docker's image inspect document (`isobox image inspect`), with the digests the
        image was pulled or pushed as."""
        from pytest_isobox.engine import documents

        info = self.image_inspect(ref)
        return documents.image_document(info, repo_digests=self.images_store.repo_digests(info.id))

    def image_history(self, ref: str) -> list[dict]:
        from pytest_isobox.engine import documents

        return documents.image_history(self.image_inspect(ref))

    def images(self) -> list[ImageInfo]:
        return self.images_store.images()

    def tag(self, ref: str, new_ref: str) -> None:
        """Point `new_ref` at `ref`'s image; a tag that already does is left as it is (a
        rebuild of a cached image writes nothing, so it needs no reaper either)."""
        from pytest_isobox.images.reference import normalize_tag

        store = self.images_store
        try:
            unchanged = store.index.tags().get(normalize_tag(new_ref)) == store.resolve(ref).id
        except (ImageNotFound, InvalidSpec):
            unchanged = False  # the store's tag() says what is wrong
        if unchanged:
            return
        self._own_resources()
        store.tag(ref, new_ref)

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        self.images_store.remove(ref, force=force, in_use=self._images_in_use())

    def save_images(self, refs: list[str], path: str | Path) -> None:
        self.images_store.save(refs, path)

    def load_images(self, path: str | Path) -> list[str]:
        self._own_resources()
        return self.images_store.load(path)

    def commit(self, container: str, *, config: dict | None = None, created_by: str = "",
               remove: bool = False) -> str:
        """A new image: the container's image plus its upper dir as one layer. With `remove`
        (a stopped container), the upper dir itself becomes the layer's unpacked copy instead
        of being unpacked again from the new blob, and the container is removed."""
        cdir = self._find(container)
        image_id = cdir.config["image_id"]
        if cdir.config["image"].startswith("/"):
            raise InvalidSpec(f"cannot commit container {cdir.id[:12]}: its image is the plain "
                              f"directory {cdir.config['image']}; import it first")
        if config is None:
            config = self.images_store.resolve(image_id).config.get("config") or {}
        take = remove and self._read_state(cdir)["status"] != "running"
        if take:
            self._reap(cdir.id)  # its monitor has ended: nothing mounts the upper dir now
        image = self.images_store.commit(image_id, cdir.upper, config, created_by,
                                         **({"take_upper": True} if take else {}))
        if remove:
            self.remove(cdir.id, force=True)
        return image

    def derive_image(self, base: str | None, *, config: dict, created_by: str,
                     author: str | None = None) -> str:
        """A new image: base's layers (none for scratch) with a new runtime config."""
        self._own_resources()
        return self.images_store.commit(base, None, config, created_by, author=author)

    def _images_in_use(self) -> set[str]:
        return {cdir.config["image_id"] for cdir in self.store.all()}

    def prune(self) -> int:
        return self.images_store.prune(in_use=self._images_in_use())

    def disk_usage(self) -> dict[str, dict]:
        """Docker's `system df` rows: per kind a count, a size, how many are in use
        ("active": images of containers, running containers, mounted volumes) and the size
        the others take ("reclaimable")."""
        usage = self.images_store.disk_usage()
        containers = list(self.store.all())
        volumes = self.volumes()
        cache = self.home / "buildcache"
        used_images, used_volumes, running, idle_size, sizes = set(), set(), 0, 0, 0
        for cdir in containers:
            with contextlib.suppress(Exception):  # removed meanwhile
                config = cdir.config
                used_images.add(config["image_id"])
                used_volumes.update(m["source"] for m in config["spec"].get("mounts") or ()
                                    if m["type"] == "volume")
                used_volumes.update(config.get("anonymous_volumes") or ())
                size = tree_size(cdir.upper)
                sizes += size
                if self.state(cdir.id).status in ("running", "paused"):
                    running += 1
                else:
                    idle_size += size
        per_image = usage.get("per_image", [])
        image_size = usage["images"]["size"] + usage["layers"]["size"]
        # what the images no container uses take alone (their layers stacked by no other)
        idle_images = sum(i["unique_size"] for i in per_image if i["id"] not in used_images)
        volume_sizes = {v: tree_size(self.volume_store.path(v)) for v in volumes}
        cache_size = tree_size(cache)
        return {
            "Images": {"count": usage["images"]["count"], "size": image_size,
                       "per_image": per_image,
                       "active": len(used_images & {i["id"] for i in per_image}),
                       "reclaimable": min(idle_images, image_size)},
            "Containers": {"count": len(containers), "size": sizes, "active": running,
                           "reclaimable": idle_size},
            "Volumes": {"count": len(volumes), "size": sum(volume_sizes.values()),
                        "active": len(used_volumes & set(volumes)),
                        "reclaimable": sum(s for v, s in volume_sizes.items()
                                           if v not in used_volumes)},
            "Build Cache": {"count": len(list(cache.iterdir())) if cache.is_dir() else 0,
                            "size": cache_size, "active": 0, "reclaimable": cache_size},
        }

    def _resolve_image(self, ref: str) -> tuple[str, dict, list[str]]:
        """(image id, runtime config, lower dirs top first) of an image ref or rootfs dir."""
        if ref.startswith("/"):
            path = Path(ref)
            if not path.is_dir():
                raise ImageNotFound(f"rootfs directory {ref} does not exist")
            import hashlib

            image_id = "sha256:" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()
            return image_id, {}, [str(path.resolve())]
        image = self.images_store.resolve(self.ensure_image(ref))
        cached = self._image_cache.get(image.id)
        if cached is None:
            lowers = [str(p) for p in reversed(self.images_store.layer_dirs(image.id))]
            cached = (image.config.get("config") or {}, lowers)
            self._image_cache[image.id] = cached
        return image.id, cached[0], list(cached[1])

