"""Part-file results: written whole, never rewritten, newest row per key on read."""

from __future__ import annotations

from pathlib import Path

import pytest

from coretune.reports.results import ResultsStore
from tests.reports.conftest import make_trial_row


def test_parts_accumulate_and_newest_row_per_key_wins(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    assert store.read("trials").empty and not store.has_results()
    first = store.write("trials", [make_trial_row(trial_id="a", test_acc=0.1),
                                   make_trial_row(trial_id="b", test_acc=0.2)])
    before = (tmp_path / first).read_bytes()
    store.write("trials", [make_trial_row(trial_id="b", test_acc=0.9),
                           make_trial_row(trial_id="c", test_acc=0.3),
                           make_trial_row(sweep="other", trial_id="a", test_acc=0.4)])
    frame = store.read("trials")
    got = {(r.sweep, r.trial_id): r.test_acc for r in frame.itertuples()}
    assert got == {("s", "a"): 0.1, ("s", "b"): 0.9, ("s", "c"): 0.3, ("other", "a"): 0.4}
    assert (tmp_path / first).read_bytes() == before  # nothing is rewritten
    assert len(store.parts("trials")) == 2 and store.write("trials", []) is None


def test_curves_and_selections_dedupe_by_their_keys(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    curves = [{"sweep": "s", "trial_id": "t", "epoch": e, "step": 10 * e,
               "coreset_epochs": float(e), "train_loss": 1.0 / e} for e in (1, 2)]
    store.write("curves", curves)
    store.write("curves", curves[1:])
    assert store.read("curves")["epoch"].tolist() == [1, 2]
    sel = [{"selection_key": "k", "dataset": "d", "selector": "random", "selector_args": "{}",
            "ratio": 0.1, "seed": 0, "index": i} for i in (5, 7)]
    store.write("selections", sel)
    store.write("selections", sel)
    frame = store.read("selections")
    assert frame["index"].tolist() == [5, 7] and frame["weight"].isna().all()


def test_corrupt_part_names_its_path(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    store.write("trials", [make_trial_row()])
    (tmp_path / "trials" / "part-99999999999999999999-junk.parquet").write_bytes(b"junk")
    with pytest.raises(ValueError, match="part-99999999999999999999-junk.parquet"):
        store.read("trials")


def test_file_uri_is_the_same_store(tmp_path: Path) -> None:
    ResultsStore(f"file://{tmp_path}").write("trials", [make_trial_row()])
    assert ResultsStore(str(tmp_path)).read("trials")["trial_id"].tolist() == ["t0"]


def test_one_driver_per_output(tmp_path: Path) -> None:
    from coretune.reports.results import OutputInUseError

    store = ResultsStore(str(tmp_path))
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / "part-1.parquet.abc.tmp").write_bytes(b"half")
    with store.lease():
        assert not (tmp_path / "trials" / "part-1.parquet.abc.tmp").exists()  # cleaned
        with pytest.raises(OutputInUseError, match="in use by another driver"):
            with store.lease():
                pass
        assert (tmp_path / "_DRIVER.lock").exists()
    assert not (tmp_path / "_DRIVER.lock").exists()
    with store.lease():  # free again
        pass


def test_a_dead_drivers_lease_is_taken_over(tmp_path: Path) -> None:
    import json
    import socket

    (tmp_path / "_DRIVER.lock").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": 2**22 + 12345, "since": "then"}))
    with ResultsStore(str(tmp_path)).lease():
        holder = json.loads((tmp_path / "_DRIVER.lock").read_text())
        assert holder["pid"] != 2**22 + 12345
