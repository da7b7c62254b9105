"""Compaction: a table's parts merge into few files, reading gives the same rows before and
after, a part written meanwhile is never shadowed, and a compaction killed at any point
(SIGKILL included) loses and duplicates nothing; many parts are read as one scan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coretune.reports.results import SMALL_READ, TABLES, ResultsStore
from coretune.reports.tables import TRIALS, to_table
from coretune.storage import Location
from tests.conftest import wait_until
from tests.reports.conftest import make_trial_row


def _fill(store: ResultsStore, n: int) -> None:
    """``n`` parts of one trial row each, every fifth superseding an earlier trial's row,
    plus curves and selections parts."""
    for i in range(n):
        tid = f"t{i // 5 * 5}" if i % 5 == 4 else f"t{i}"  # a re-run's newer row
        store.write("trials", [make_trial_row(trial_id=tid, test_acc=i / n, seed=i)])
        store.write("curves", [{"sweep": "s", "trial_id": tid, "epoch": 1, "step": 10,
                                "coreset_epochs": 1.0, "test_acc": i / n}])
    store.write("selections", [{"selection_key": "k", "dataset": "d", "selector": "random",
                                "selector_args": "{}", "ratio": 0.1, "seed": 0, "index": j}
                               for j in range(7)])


def _all(store: ResultsStore) -> dict[str, pd.DataFrame]:
    return {t: store.read(t) for t in ("trials", "curves", "selections")}


def _same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for table in a:
        pd.testing.assert_frame_equal(a[table].reset_index(drop=True),
                                      b[table].reset_index(drop=True), check_like=False)


def test_compaction_merges_parts_and_keeps_the_newest_row_per_key(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    _fill(store, 30)
    before = _all(store)
    assert len(before["trials"]) == 24 and before["trials"]["trial_id"].is_unique
    newest = before["trials"].set_index("trial_id").loc["t5", "test_acc"]
    assert newest == pytest.approx(9 / 30)  # part 9 superseded part 5
    done = store.compact()
    assert done == {"trials": (30, 1), "curves": (30, 1)}  # selections: one part already
    assert len(store.parts("trials")) == 1 and len(store.parts("curves")) == 1
    _same(before, _all(store))
    raw = pq.read_table(tmp_path / store.parts("trials")[0])
    assert raw.num_rows == 24  # superseded rows are gone from disk too
    store.write("trials", [make_trial_row(trial_id="t0", test_acc=0.99)])  # a later re-run
    assert store.read("trials").set_index("trial_id").loc["t0", "test_acc"] == 0.99
    assert store.compact(max_rows=10) == {"trials": (2, 3)}  # at most 10 rows per file
    assert store.read("trials").set_index("trial_id").loc["t0", "test_acc"] == 0.99
    assert store.compact() == {"trials": (3, 1)}


def test_a_part_written_during_compaction_is_never_shadowed(tmp_path, monkeypatch):
    store = ResultsStore(str(tmp_path))
    _fill(store, 12)
    merge = ResultsStore.newest_rows

    def merge_then_another_writer(self, spec, names):
        merged = merge(self, spec, names)  # the parts are read; a newer one lands now
        if spec.name == "trials":
            store.write("trials", [make_trial_row(trial_id="t0", test_acc=0.77),
                                   make_trial_row(trial_id="new", test_acc=0.5)])
        return merged

    monkeypatch.setattr(ResultsStore, "newest_rows", merge_then_another_writer)
    store.compact()
    monkeypatch.undo()
    trials = store.read("trials").set_index("trial_id")
    assert trials.loc["t0", "test_acc"] == 0.77 and trials.loc["new", "test_acc"] == 0.5
    assert len(store.parts("trials")) == 2  # the merged file and the newer part, kept


@pytest.mark.parametrize("survivors", [1, 6, 12])
def test_a_compaction_stopped_mid_delete_loses_nothing(tmp_path, monkeypatch, survivors):
    """Stopped after the merged file is committed, with ``survivors`` merged parts left:
    the rows read are the same; the next compaction finishes the job."""
    store = ResultsStore(str(tmp_path))
    _fill(store, 12)
    before = _all(store)
    deleted = []
    real_delete = Location.delete

    def delete_until_killed(self, rel):
        if "/trials/" in f"/{rel}" and len(deleted) >= 12 - survivors:
            raise KeyboardInterrupt("killed")
        real_delete(self, rel)
        deleted.append(rel)

    monkeypatch.setattr(Location, "delete", delete_until_killed)
    monkeypatch.setattr("coretune.reports.results.ThreadPoolExecutor", _Serial)
    with pytest.raises(KeyboardInterrupt):
        store.compact()
    monkeypatch.undo()
    assert len(store.parts("trials")) == survivors + 1
    _same(before, _all(store))
    store.compact()
    assert len(store.parts("trials")) == 1
    _same(before, _all(store))


class _Serial:
    """A stand-in executor running in order on the calling thread (deterministic kills)."""

    def __init__(self, max_workers=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items):
        return [fn(x) for x in items]


KILLED = """
import sys, time
from coretune.reports.results import ResultsStore
from coretune.reports.tables import TRIALS, to_table
from coretune.storage import Location
real = Location.delete
def slow_delete(self, rel):  # widen the window between the merge and the last delete
    real(self, rel)
    time.sleep(0.02)
Location.delete = slow_delete
ResultsStore(sys.argv[1]).compact()
"""


def test_sigkill_during_compaction_then_a_rerun_leaves_one_row_per_trial(tmp_path):
    store = ResultsStore(str(tmp_path / "out"))
    _fill(store, 40)
    before = _all(store)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED),
                             str(tmp_path / "out")], stderr=subprocess.PIPE, text=True)

    def merged_and_deleting() -> bool:
        assert proc.poll() is None, proc.stderr.read()
        names = store.parts("trials")
        return any("-c" in Path(n).name for n in names) and len(names) < 30

    try:
        wait_until(merged_and_deleting, 60, "the merged file and some deletes", every=0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 1 < len(store.parts("trials")) < 41  # killed mid-way: merged file + survivors
    _same(before, _all(store))
    store.compact()  # the re-run
    assert len(store.parts("trials")) == 1 and len(store.parts("curves")) == 1
    after = _all(store)
    _same(before, after)
    assert after["trials"]["trial_id"].is_unique


def test_many_parts_scan_as_one_dataset_like_one_by_one(tmp_path: Path) -> None:
    """Above SMALL_READ parts the scan path runs: rows in part order (newest wins), an old
    part without a later nullable column read as null, a corrupt part named."""
    store = ResultsStore(str(tmp_path))
    n = SMALL_READ * 3
    old = to_table([make_trial_row(trial_id="old")], TRIALS).drop_columns(["label_args"])
    (tmp_path / "trials").mkdir()
    pq.write_table(old, tmp_path / "trials" / "part-00000000000000000001-old.parquet")
    _fill(store, n)
    frame = store.read("trials")
    one_by_one = pd.concat([store._read_part(TABLES["trials"], p).to_pandas()
                            for p in store.parts("trials")])
    expected = one_by_one.drop_duplicates(["sweep", "trial_id"], keep="last")
    pd.testing.assert_frame_equal(frame, expected.reset_index(drop=True))
    assert pd.isna(frame.set_index("trial_id").loc["old", "label_args"])
    (tmp_path / "trials" / "part-99999999999999999990-junk.parquet").write_bytes(b"junk")
    with pytest.raises(ValueError, match="part-99999999999999999990-junk.parquet"):
        store.read("trials")
    (tmp_path / "trials" / "part-99999999999999999990-junk.parquet").unlink()
    bad = make_trial_row(trial_id="bad")
    pq.write_table(pa.Table.from_pylist([{**bad, "surprise": 1}]),
                   tmp_path / "trials" / "part-99999999999999999991-extra.parquet")
    with pytest.raises(ValueError, match="extra.parquet.*unexpected columns \\['surprise'\\]"):
        store.read("trials")


def test_the_compact_command_merges_and_refuses_what_it_cannot(tmp_path: Path) -> None:
    from coretune.cli import main
    from coretune.reports.results import DriverLease

    store = ResultsStore(str(tmp_path / "out"))
    _fill(store, 10)
    before = _all(store)
    assert main(["compact", str(tmp_path / "out")]) == 0
    assert len(store.parts("trials")) == 1
    _same(before, _all(store))
    assert main(["compact", str(tmp_path / "nothing")]) == 2  # no results there
    store.write("trials", [make_trial_row(trial_id="late")])
    with DriverLease(store):  # a sweep is writing: refused, nothing merged
        assert main(["compact", str(tmp_path / "out")]) == 2
    assert len(store.parts("trials")) == 2
