"""Key locks: one holder per key across processes and threads, no file per key."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

from pytest_isobox.locks import KEYS_FILE, key_lock


def _hold(locks: str, key: str, held: multiprocessing.Event, release: multiprocessing.Event) -> None:
    with key_lock(Path(locks), key):
        held.set()
        release.wait(30)


def test_a_key_held_by_another_process_waits_other_keys_do_not(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold, args=(str(tmp_path), "layer-a", held, release))
    child.start()
    try:
        assert held.wait(30)
        with key_lock(tmp_path, "layer-b"):  # another key: free at once
            pass
        got = threading.Event()

        def take() -> None:
            with key_lock(tmp_path, "layer-a"):
                got.set()
        taker = threading.Thread(target=take)
        taker.start()
        assert not got.wait(0.3)  # still held by the child
        release.set()
        assert got.wait(30)
        taker.join()
    finally:
        release.set()
        child.join()
    assert os.listdir(tmp_path) == [KEYS_FILE]


def test_threads_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    inside: list[int] = []
    overlaps: list[int] = []

    def work(n: int) -> None:
        for _ in range(20):
            with key_lock(tmp_path, "tags"):
                inside.append(n)
                if len(inside) > 1:
                    overlaps.append(n)
                time.sleep(0.0005)
                inside.remove(n)
    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_a_dead_holder_releases_its_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold, args=(str(tmp_path), "k", held, release))
    child.start()
    assert held.wait(30)
    child.kill()
    child.join()
    with key_lock(tmp_path, "k"):
        pass
