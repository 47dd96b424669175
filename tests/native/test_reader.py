"""The read-only reader (native/reader.py) answers as the engine does, over real containers:
running, paused, exited, created, renamed, with logs and volumes."""

from __future__ import annotations

import contextlib

import pytest

from pytest_isobox.engine import ContainerNotFound, ContainerSpec, open_engine
from pytest_isobox.native.engine import NativeEngine
from pytest_isobox.native.reader import NativeReader


def _both(home):
    return NativeReader(home=home), NativeEngine(home=home, read_only=True)


def test_open_engine_read_only_gives_the_reader(isobox_home) -> None:
    reader = open_engine("native", home=str(isobox_home), read_only=True)
    try:
        assert isinstance(reader, NativeReader) and reader._engine is None
        assert not isinstance(open_engine("native", home=str(isobox_home)), NativeReader)
    finally:
        reader.close()


def test_reader_states_are_the_engines(engine, rootfs, isobox_home) -> None:
    def spec(*command: str, **kw) -> ContainerSpec:
        return ContainerSpec(image=rootfs, command=list(command), network_mode="none",
                             persistent=True, **kw)  # (a same-process engine's close keeps them)

    made: list[str] = []
    reader = full = None
    try:
        running = engine.run(spec("sleep", "60", labels={"a": "1"}))
        made.append(running.id)
        paused = engine.run(spec("sleep", "60"))
        made.append(paused.id)
        engine.pause(paused.id)
        exited = engine.run(spec("sh", "-c", "echo out; echo err >&2; exit 3"))
        made.append(exited.id)
        assert engine.wait(exited.id) == 3
        created = engine.create(spec("true"))
        made.append(created.id)
        engine.rename(created.id, "renamed-one")
        engine.volume_create("vol-a")
        reader, full = _both(isobox_home)
        # the exit is folded in (and written) by the engine the first time anyone asks
        assert reader.state(exited.id) == full.state(exited.id)
        reader.close()
        full.close()
        reader, full = _both(isobox_home)
        assert reader.containers(all=True) == full.containers(all=True)
        assert reader.containers() == full.containers()
        assert {s.status for s in reader.containers(all=True)} >= {"running", "paused",
                                                                   "exited", "created"}
        for ref in (running.id, running.id[:12], running.name, "renamed-one", paused.id):
            assert reader.state(ref) == full.state(ref)
        assert list(reader.logs(exited.id)) == list(full.logs(exited.id))
        assert list(reader.logs(exited.id, tail=1, stdout=False)) == \
            list(full.logs(exited.id, tail=1, stdout=False))
        assert reader.volumes() == full.volumes() == ["vol-a"]
        for ref in ("nope", "", "../x"):
            with pytest.raises(ContainerNotFound) as ours:
                reader.state(ref)
            with pytest.raises(ContainerNotFound) as theirs:
                full.state(ref)
            assert str(ours.value) == str(theirs.value)
        engine.import_rootfs(rootfs, "reader-img:1")
        assert reader.images() == full.images()
        assert reader.image_inspect("reader-img:1") == full.image_inspect("reader-img:1")
        assert reader.image_document("reader-img:1") == full.image_document("reader-img:1")
        with pytest.raises(ContainerNotFound, match="no such container: reader-img:1"):
            reader.inspect("reader-img:1")
        for cid in (running.id, paused.id, exited.id, created.id):  # (network_mode none)
            assert reader.inspect(cid) == full.inspect(cid)
        assert reader._engine is None  # all of it answered without the engine
        assert reader.inspect(running.id, size=True) == full.inspect(running.id, size=True)
        assert reader._engine is not None  # (-s walks the writable layer: the engine's)
    finally:
        for opened in (reader, full):
            if opened is not None:
                opened.close()
        if len(made) > 1:
            with contextlib.suppress(Exception):  # (not paused: the test failed before)
                engine.unpause(made[1])
        for cid in made:
            engine.remove(cid, force=True)



def _counts_store_opens(monkeypatch) -> list[int]:
    """How often images.store.ImageStore is opened from now on (the reader should not)."""
    from pytest_isobox.images import store

    opened: list[int] = []
    real = store.ImageStore.__init__

    def counting(self, *args, **kwargs):
        opened.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(store.ImageStore, "__init__", counting)
    return opened


def test_reader_images_are_the_stores(engine, rootfs, isobox_home, monkeypatch) -> None:
    """images, image inspect and the image document from the store's files, as the store
    gives them; any reference the files alone do not settle, and damage, go to the store."""
    from pytest_isobox.engine import ImageNotFound

    first = engine.import_rootfs(rootfs, "reader-img:1")
    engine.tag("reader-img:1", "reader-img")  # :latest
    engine.tag("reader-img:1", "example.com/team/reader-img:2")
    second = engine.import_rootfs(rootfs, "reader-other:1")
    opened = _counts_store_opens(monkeypatch)
    reader, full = _both(isobox_home)
    try:
        assert reader.images() == full.images()
        plain = ("reader-img:1", "reader-img", "reader-img:latest", first,
                 "example.com/team/reader-img:2", "reader-other:1", second)
        for ref in plain:
            assert reader.image_inspect(ref) == full.image_inspect(ref), ref
            assert reader.image_document(ref) == full.image_document(ref), ref
        assert reader._engine is None and reader._store is None and len(opened) == 1
        # the store decides: id prefixes, bare hex, other spellings of a name, digests
        for ref in (first[7:19], first[7:], "docker.io/library/reader-img:1",
                    f"reader-img@{first}"):
            assert reader.image_document(ref) == full.image_document(ref), ref
        for ref in ("nope", "Reader-img", "sha256:" + "0" * 64, "reader-img:9"):
            with pytest.raises(ImageNotFound) as ours:
                reader.image_document(ref)
            with pytest.raises(ImageNotFound) as theirs:
                full.image_document(ref)
            assert str(ours.value) == str(theirs.value)
    finally:
        reader.close()
        full.close()
    # a damaged config (still JSON, not its digest): the store lists the image with an
    # empty config and finds it no more, and so must we
    blob = isobox_home / "oci" / "blobs" / "sha256" / second.removeprefix("sha256:")
    blob.write_bytes(blob.read_bytes().replace(b'"os"', b'"OS"'))
    reader, full = _both(isobox_home)
    try:
        assert reader.images() == full.images()
        assert {i.id: i.config for i in reader.images()}[second] == {}
        for ours_or_theirs in (reader, full):
            with pytest.raises(Exception, match="does not match its digest"):
                ours_or_theirs.image_document("reader-other:1")
    finally:
        reader.close()
        full.close()
    # a damaged tags.json: the store's error, whoever is asked
    (isobox_home / "tags.json").write_text("{")
    reader, full = _both(isobox_home)
    try:
        for ours_or_theirs in (reader, full):
            with pytest.raises(Exception, match="damaged image index"):
                ours_or_theirs.images()
    finally:
        reader.close()
        full.close()


def test_reader_inspect_and_networks_are_the_engines(engine, rootfs, isobox_home) -> None:
    """A container on the default network and on a network of its own, with a published
    port, a label and a healthcheck-free keeper: the same inspect document and network list
    from the files as from the engine (the network manager)."""
    from pytest_isobox.engine import NetworkAttachment, PortSpec

    made: list[str] = []
    reader = full = None
    engine.network_create("reader-net", labels={"k": "v"})
    try:
        c = engine.run(ContainerSpec(image=rootfs, command=["sleep", "60"], persistent=True,
                                     ports=[PortSpec.parse("127.0.0.1::80")],
                                     labels={"a": "1"}))
        made.append(c.id)
        engine.network_connect("reader-net", c.id, aliases=["other-name"])
        quiet = engine.run(ContainerSpec(image=rootfs, command=["true"], persistent=True,
                                         networks=[NetworkAttachment("reader-net")]))
        made.append(quiet.id)
        engine.wait(quiet.id)
        engine.state(quiet.id)  # (its end folded in by the engine, once)
        reader, full = _both(isobox_home)
        assert reader.networks() == full.networks()
        assert {n.name for n in reader.networks()} >= {"bridge", "reader-net"}
        for cid in (c.id, quiet.id):
            assert reader.inspect(cid) == full.inspect(cid)
        assert reader.inspect(c.name) == full.inspect(c.id)
        assert reader._engine is None  # all of it answered from the files
        for spelled in (f"{isobox_home}/", f"{isobox_home.parent}//{isobox_home.name}"):
            again, again_full = _both(spelled)  # (the engine's paths are pathlib's)
            try:
                assert again.inspect(c.id) == again_full.inspect(c.id)
            finally:
                again.close()
                again_full.close()
        assert reader.inspect(c.id, size=True) == full.inspect(c.id, size=True)  # handed over
    finally:
        for opened in (reader, full):
            if opened is not None:
                opened.close()
        for cid in made:
            engine.remove(cid, force=True)
        engine.network_remove("reader-net")


def test_reader_hands_an_unused_default_network_to_the_engine(engine, rootfs,
                                                              isobox_home) -> None:
    """The engine's close removes the default network when no container is on it; a list
    read from the files would keep it, so the reader leaves that list to the engine."""
    c = engine.run(ContainerSpec(image=rootfs, command=["true"]))
    engine.wait(c.id)
    engine.remove(c.id)  # (the engine's own close would remove the network: not yet)
    reader = NativeReader(home=isobox_home)
    try:
        assert "bridge" in [n.name for n in reader.networks()]
        assert reader._engine is not None
    finally:
        reader.close()
    reader = NativeReader(home=isobox_home)
    try:
        assert "bridge" not in [n.name for n in reader.networks()]  # the first one's close
    finally:
        reader.close()
