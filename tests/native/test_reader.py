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
        assert reader._engine is None  # all of it answered without the engine
        assert reader.inspect(running.id) == full.inspect(running.id)  # handed over
    finally:
        for opened in (reader, full):
            if opened is not None:
                opened.close()
        if len(made) > 1:
            with contextlib.suppress(Exception):  # (not paused: the test failed before)
                engine.unpause(made[1])
        for cid in made:
            engine.remove(cid, force=True)

