"""DockerEngine builds and images against the real daemon: steps, cache, errors, archives."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pytest_isobox.engine import BuildError, BuildStep, ImageNotFound
from tests.conftest import needs_docker
from tests.docker.conftest import Made, podman_differs

pytestmark = needs_docker


def _context(tmp_path: Path, image: str, *lines: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text("\n".join([f"FROM {image}", *lines]) + "\n")
    return ctx


def _output(made: Made, image: str, command: list[str]) -> bytes:
    state = made.run(command, image=image)
    made.engine.wait(state.id, timeout=30)
    return b"".join(d for _, d in made.engine.logs(state.id))


def test_build_then_cached_rebuild(made: Made, tmp_path: Path) -> None:
    ctx = _context(
        tmp_path, made.image,
        'MAINTAINER qingbing "qingbing@qq.com"',
        f'RUN mkdir /data && echo "hello world {uuid.uuid4().hex}" > /data/hello.txt',
        "EXPOSE 80",
    )
    tag = f"isobox-test/built:{uuid.uuid4().hex[:10]}"
    made.images.append(tag)
    first: list[BuildStep] = []
    image_id = made.engine.build(ctx, tag=tag, on_step=first.append)
    assert image_id.startswith("sha256:")
    assert [s.instruction.split()[0] for s in first] == ["FROM", "MAINTAINER", "RUN", "EXPOSE"]
    assert [s.index for s in first] == [1, 2, 3, 4] and {s.total for s in first} == {4}
    assert not any(s.cached for s in first[1:])
    assert first[-1].image_id == image_id
    info = made.engine.image_inspect(tag)
    assert info.id == image_id and tag in info.tags
    assert "80/tcp" in info.config["config"]["ExposedPorts"]
    assert _output(made, tag, ["cat", "/data/hello.txt"]).startswith(b"hello world ")

    again: list[BuildStep] = []
    assert made.engine.build(ctx, tag=tag, on_step=again.append) == image_id
    assert all(s.cached for s in again[1:]) and len(again) == 4
    assert [s.image_id for s in again] == [s.image_id for s in first]


def test_dockerignore_keeps_files_out_of_the_context(made: Made, tmp_path: Path) -> None:
    ctx = _context(tmp_path, made.image, "COPY . /ctx/", 'CMD ["ls", "-a", "/ctx"]')
    (ctx / "keep.txt").write_text("keep\n")
    (ctx / "secret.txt").write_text("secret\n")
    (ctx / "logs").mkdir()
    (ctx / "logs" / "a.log").write_text("log\n")
    (ctx / ".dockerignore").write_text("secret.txt\nlogs\nDockerfile\n")
    image_id = made.engine.build(ctx)
    made.images.append(image_id)
    listing = _output(made, image_id, ["ls", "-a", "/ctx"]).split()
    # the daemon drops a Dockerfile the ignore file names after reading it, as in Docker
    assert sorted(listing) == sorted([b".", b"..", b".dockerignore", b"keep.txt"])


def test_build_args_target_and_dockerfile_outside_context(made: Made, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    dockerfile = tmp_path / "elsewhere.Dockerfile"
    dockerfile.write_text(
        f"FROM {made.image} AS first\nARG WHO=nobody\nRUN echo $WHO > /who\n"
        f"FROM first AS second\nRUN echo never > /never\n"
    )
    image_id = made.engine.build(ctx, dockerfile=str(dockerfile), buildargs={"WHO": "arg"},
                                 target="first", no_cache=True)
    made.images.append(image_id)
    assert _output(made, image_id, ["cat", "/who"]) == b"arg\n"
    assert _output(made, image_id, ["sh", "-c", "test -e /never || echo absent"]) == b"absent\n"


def test_failing_run_raises_build_error_with_last_lines(made: Made, tmp_path: Path) -> None:
    ctx = _context(tmp_path, made.image, "RUN echo one; echo two >&2; exit 3")
    steps: list[BuildStep] = []
    with pytest.raises(BuildError) as failure:
        made.engine.build(ctx, tag="isobox-test/never:x", on_step=steps.append)
    message = str(failure.value)
    assert "step 2/2" in message
    assert "returned a non-zero code: 3" in message or "exit status 3" in message  # Buildah
    assert "one" in message and "two" in message and "\x1b[" not in message
    assert [s.index for s in steps] == [1]
    with pytest.raises(ImageNotFound):
        made.engine.image_inspect("isobox-test/never:x")


@podman_differs("Buildah's Dockerfile errors name no line")
def test_dockerfile_error_names_the_file_and_line(made: Made, tmp_path: Path) -> None:
    ctx = _context(tmp_path, made.image, "NOSUCHINSTRUCTION x")
    with pytest.raises(BuildError, match=r"Dockerfile.*line 2"):
        made.engine.build(ctx)


def test_missing_dockerfile_is_named(made: Made, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="Nope.Dockerfile"):
        made.engine.build(tmp_path, dockerfile="Nope.Dockerfile")


def test_tag_save_load_and_remove(made: Made, tmp_path: Path) -> None:
    tag = f"isobox-test/saved:{uuid.uuid4().hex[:10]}"
    made.images.append(tag)
    made.engine.tag(made.image, tag)
    assert tag in made.engine.image_inspect(made.image).tags
    assert any(tag in info.tags for info in made.engine.images())
    archive = tmp_path / "images.tar"
    made.engine.save_images([tag], archive)
    made.engine.remove_image(tag)
    with pytest.raises(ImageNotFound):
        made.engine.image_inspect(tag)
    assert made.engine.load_images(archive) == [tag]
    assert made.engine.image_inspect(tag).id == made.engine.image_inspect(made.image).id


def test_import_from_a_tar(made: Made, busybox_rootfs: Path, tmp_path: Path) -> None:
    import tarfile

    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(busybox_rootfs, arcname=".")
    tag = f"isobox-test/fromtar:{uuid.uuid4().hex[:10]}"
    made.images.append(tag)
    image_id = made.engine.import_rootfs(archive, tag)
    assert made.engine.image_inspect(tag).id == image_id
    assert _output(made, tag, ["echo", "imported"]) == b"imported\n"


@podman_differs("a commit of an unchanged container adds an empty layer")
def test_derive_image_from_base_and_scratch(made: Made) -> None:
    derived = made.engine.derive_image(
        made.image, config={"Env": ["A=2", "PATH=/bin"], "Cmd": ["sh", "-c", "echo $A"]},
        created_by="ENV A=2", author="tester")
    made.images.append(derived)
    info = made.engine.image_inspect(derived)
    assert info.config["author"] == "tester"
    assert info.config["rootfs"] == made.engine.image_inspect(made.image).config["rootfs"]
    assert _output(made, derived, None) == b"2\n"  # type: ignore[arg-type]
    scratch = made.engine.derive_image(None, config={"Cmd": ["x"]}, created_by="LABEL a=b")
    made.images.append(scratch)
    assert made.engine.image_inspect(scratch).config["rootfs"]["diff_ids"] == []


@podman_differs("builds with networkmode=none still see the host's links")
def test_build_network_none_has_only_loopback(made: Made, tmp_path: Path) -> None:
    ctx = _context(tmp_path, made.image, "RUN ls /sys/class/net > /links")
    image_id = made.engine.build(ctx, network="none", no_cache=True)
    made.images.append(image_id)
    assert _output(made, image_id, ["cat", "/links"]) == b"lo\n"


@podman_differs("system df reports no image sizes")
def test_disk_usage_counts_images(made: Made) -> None:
    usage = made.engine.disk_usage()
    assert set(usage) == {"Images", "Containers", "Volumes", "Build Cache"}
    assert usage["Images"]["count"] >= 1 and usage["Images"]["size"] > 0
