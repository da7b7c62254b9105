"""The artifact store: commit markers, corruption, exactly-once builds across processes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pytest

from coretune.artifacts.store import COMMIT, LOCK, ArtifactStore, Built, CorruptArtifactError
from coretune.spec import content_key


def _key(name: str = "x") -> str:
    return content_key("scores", 1, {"d": name})


def test_content_key_is_order_insensitive_and_input_sensitive():
    assert content_key("t", 1, {"a": 1, "b": [1, 2]}) == content_key("t", 1, {"b": [1, 2], "a": 1})
    assert content_key("t", 1, {"a": 1}) != content_key("t", 1, {"a": 2})
    assert content_key("t", 1, {"a": 1}) != content_key("u", 1, {"a": 1})
    assert content_key("t", 1, {"a": 1}) != content_key("t", 2, {"a": 1})  # version
    assert content_key("t", 1, {}, {"d": "k1"}) != content_key("t", 1, {}, {"d": "k2"})
    assert content_key("t", 1, {}, None, "fp1") != content_key("t", 1, {}, None, "fp2")


def test_build_once_runs_once_and_round_trips(tmp_path):
    store = ArtifactStore(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return Built({"x": np.arange(5)}, {"acc": 0.5}, {"blob": b"abc"})

    art, built = store.build_once(_key(), compute)
    again, built_again = store.build_once(_key(), compute)
    assert built and not built_again and len(calls) == 1
    assert np.array_equal(again.array("x"), np.arange(5)) and again.blob("blob") == b"abc"
    assert again.meta["acc"] == 0.5 and again.has("x") and not again.has("weights")
    assert not (Path(art.path) / LOCK).exists()


def test_files_without_commit_marker_are_rebuilt_not_read(tmp_path):
    store = ArtifactStore(tmp_path)
    art = store.save(_key(), Built({"x": np.arange(3)}, {}))
    (Path(art.path) / COMMIT).unlink()  # a build killed before its commit
    (Path(art.path) / "x.npy").write_bytes(b"half-written")
    assert not store.exists(_key())
    rebuilt, built = store.build_once(_key(), lambda: Built({"x": np.arange(4)}, {}))
    assert built and rebuilt.array("x").tolist() == [0, 1, 2, 3]


def test_corrupt_artifact_raises_naming_the_file(tmp_path):
    store = ArtifactStore(tmp_path)
    art = store.save(_key(), Built({"x": np.arange(100)}, {}))
    (Path(art.path) / "x.npy").write_bytes(b"garbage")
    with pytest.raises(CorruptArtifactError, match="x.npy"):
        store.load(_key())
    (Path(art.path) / COMMIT).write_text("{not json")
    with pytest.raises(CorruptArtifactError, match=COMMIT):
        store.load(_key())
    assert (Path(art.path) / "x.npy").exists()  # nothing is deleted behind the user's back


def test_marker_checksums_are_the_stores_own(tmp_path):
    store = ArtifactStore(tmp_path)
    art = store.save(_key(), Built({"x": np.arange(10)}, {"files": "user meta cannot lie"}))
    marker = json.loads((Path(art.path) / COMMIT).read_text())
    assert set(marker["files"]) == {"x.npy"} and marker["meta"]["files"] == "user meta cannot lie"


def test_stale_lock_of_a_dead_builder_is_taken_over(tmp_path):
    store = ArtifactStore(tmp_path, stale_after=0.5)
    lock = tmp_path / "scores" / _key() / LOCK
    lock.parent.mkdir(parents=True)
    lock.write_text("dead-host:1:token")
    old = time.time() - 10
    os.utime(lock, (old, old))
    art, built = store.build_once(_key(), lambda: Built({"x": np.arange(2)}, {}))
    assert built and art.array("x").tolist() == [0, 1]


def _processes():
    """Child processes forked from one server that has imported this module (and torch)
    once, instead of a fresh interpreter importing them for each child (seconds each)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def _killed_builder(root: str, key: str, half: str, conn) -> None:
    def compute():
        with open(half, "wb") as fh:  # a write the kill leaves half-done
            fh.write(b"half")
        conn.send("building")  # the parent kills this process now
        time.sleep(600)
        return Built({}, {})

    ArtifactStore(root, stale_after=3600).build_once(key, compute)


def test_a_killed_builders_lock_is_taken_over_at_once(tmp_path):
    """A builder killed mid-build (its heartbeat would keep the lock fresh for an hour):
    the next build_once sees its process is gone, takes over, removes its half-writes."""
    key = _key("killed")
    where = tmp_path / "scores" / key
    ctx = _processes()
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_killed_builder,
                       args=(str(tmp_path), key, str(where / "x.npy.0123456789ab.tmp"), child))
    proc.start()
    try:
        assert parent.poll(60) and parent.recv() == "building"  # it holds the lock, mid-build
        assert json.loads((where / LOCK).read_text())["pid"] == proc.pid
    finally:
        proc.kill()
        proc.join(30)
    assert (where / LOCK).exists() and (where / "x.npy.0123456789ab.tmp").exists()
    started = time.monotonic()
    store = ArtifactStore(tmp_path, stale_after=3600)
    art, built = store.build_once(key, lambda: Built({"x": np.arange(3)}, {}))
    assert built and art.array("x").tolist() == [0, 1, 2]
    assert time.monotonic() - started < 60  # not the hour of a stale heartbeat
    assert sorted(p.name for p in where.iterdir()) == [COMMIT, "x.npy"]


def test_a_live_holders_lock_is_waited_for_and_only_its_own_is_released(tmp_path):
    from coretune.storage import Location
    from coretune.storage.locks import Lock

    first = Lock(Location(tmp_path), LOCK, stale_after=3600, heartbeat=0.01)
    second = Lock(Location(tmp_path), LOCK, stale_after=3600, heartbeat=0.01)
    assert first.acquire() and not second.acquire()  # this process is alive: no take-over
    assert second.current_holder()["token"] == first.holder["token"]
    before = (tmp_path / LOCK).stat().st_mtime_ns
    deadline = time.monotonic() + 30
    while (tmp_path / LOCK).stat().st_mtime_ns == before:  # the heartbeat refreshes it
        assert time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.01)
    second.release()  # not its lock: nothing happens
    assert (tmp_path / LOCK).exists()
    first.release()
    assert not (tmp_path / LOCK).exists()
    assert second.acquire()
    second.release()


def test_store_errors_are_cache_errors():
    from coretune.errors import CacheError
    from coretune.reports.results import OutputInUseError

    assert issubclass(CorruptArtifactError, CacheError)
    assert issubclass(OutputInUseError, CacheError)
    assert issubclass(CorruptArtifactError, RuntimeError)


def _builder(root: str, log: str, start) -> None:
    store = ArtifactStore(root)
    start.wait(60)  # all processes race for the lock at once

    def compute():
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        return Built({"x": np.arange(7)}, {"by": os.getpid()})

    art, _ = store.build_once(_key("shared"), compute, poll=0.01)
    assert art.array("x").tolist() == list(range(7))


def test_many_processes_build_each_artifact_once(tmp_path):
    log = tmp_path / "builds.log"
    ctx = _processes()
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_builder, args=(str(tmp_path / "store"), str(log), start))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert len(log.read_text().split()) == 1


@pytest.mark.parametrize("indices,weights,match", [
    (np.array([3, 3, 5]), None, "duplicate"),
    (np.array([0, 1, 99]), None, "outside"),
    (np.array([-1, 1]), None, "outside"),
    (np.array([0.0, 1.0]), None, "dtype"),
    (np.array([0, 1]), np.array([1.0, np.nan]), "weights"),
])
def test_a_bad_cached_selection_is_refused(tmp_path, indices, weights, match):
    from coretune.artifacts.selection import load_selection

    store = ArtifactStore(tmp_path)
    arrays = {"indices": indices} | ({} if weights is None else {"weights": weights})
    art = store.save(content_key("selection", 1, {"i": str(indices)}), Built(arrays, {}))
    with pytest.raises(CorruptArtifactError, match=match):
        load_selection(art, num_samples=10)
    good = store.save(_key("good"), Built({"indices": np.array([2, 4])}, {}))
    assert load_selection(good, 10)[0].tolist() == [2, 4]


def test_files_outside_the_commit_are_never_read(tmp_path):
    store = ArtifactStore(tmp_path)
    art = store.save(_key(), Built({"x": np.arange(3)}, {}))
    np.save(Path(art.path) / "planted.npy", np.arange(99))
    with pytest.raises(CorruptArtifactError, match="planted.npy is not among"):
        store.load(_key()).array("planted")


def test_a_batch_publishes_its_artifacts_together_at_commit(tmp_path):
    store = ArtifactStore(tmp_path)
    with store.batch() as batch:
        art, built = batch.build_once(_key("a"), lambda: Built({"x": np.arange(3)}, {"m": 1}))
        assert built and _key("a") in batch.pending and not store.exists(_key("a"))
        assert (Path(art.path) / LOCK).exists()  # held until the commit
        batch.build_once(_key("b"), lambda: Built({"x": np.arange(4)}, {}))
    assert store.load(_key("a")).meta == {"m": 1} and store.exists(_key("b"))
    assert not [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")
                or p.name == LOCK]
    with store.batch() as batch:  # committed already: loaded, not built
        assert batch.build_once(_key("a"), lambda: 1 / 0)[1] is False


def test_a_failing_build_in_a_batch_keeps_what_was_built_before_it(tmp_path):
    store = ArtifactStore(tmp_path)

    def fail():
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"), store.batch() as batch:
        batch.build_once(_key("first"), lambda: Built({"x": np.arange(2)}, {}))
        batch.build_once(_key("second"), fail)
    assert store.exists(_key("first")) and not store.exists(_key("second"))
    assert not list(tmp_path.rglob(LOCK))


def _batch_builder(root: str, log: str, order: list[int], start) -> None:
    store = ArtifactStore(root)
    start.wait(60)

    def compute(i: int):
        with open(log, "a") as fh:
            fh.write(f"{i}\n")
        time.sleep(0.02)
        return Built({"x": np.arange(i + 1)}, {})

    with store.batch() as batch:
        for i in order:
            batch.build_once(_key(f"k{i}"), lambda i=i: compute(i), poll=0.01)


def test_batches_in_many_processes_build_each_artifact_once_without_deadlock(tmp_path):
    """Three batches over the same artifacts in different orders: a batch never waits
    while it holds locks (it commits first), so none deadlocks, and each is built once."""
    log = tmp_path / "builds.log"
    ctx = _processes()
    start = ctx.Barrier(3)
    orders = [list(range(12)), list(reversed(range(12))), [5, 0, 7, 2, 9, 4, 11, 6, 1, 8, 3, 10]]
    procs = [ctx.Process(target=_batch_builder, args=(str(tmp_path / "s"), str(log), o, start))
             for o in orders]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert sorted(map(int, log.read_text().split())) == list(range(12))
    store = ArtifactStore(tmp_path / "s")
    assert all(store.load(_key(f"k{i}")).array("x").size == i + 1 for i in range(12))
