"""Schemas, conversion and single-file reads of coretune.reports.tables; whole-file Parquet
writes through coretune.storage.write_atomic (the one atomic write)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coretune.reports import tables as S
from coretune.storage import write_atomic
from tests.reports.conftest import make_trial_row

TRIAL_COLUMNS = [
    "sweep", "trial_id", "status", "error", "dataset", "arch", "selector", "selector_args",
    "ratio", "n_selected", "label_mode", "tau", "lam", "eps", "beta", "seed", "budget",
    "teacher_key", "teacher_test_acc", "test_acc", "test_top5", "test_nll", "test_ece",
    "epochs_run", "stopped_early", "select_seconds", "train_seconds", "peak_memory_bytes",
    "device", "coretune_version", "git_sha", "torch_version", "ray_version", "started_at",
    "finished_at",
    # added after the original columns by the middle-layer rebuild, all nullable
    "smoothing", "val_acc", "val_top5", "val_nll", "val_ece", "metric", "data_fingerprint",
    "selection_key", "group_id", "arch_args", "trial_spec", "diverged_at_step", "retries",
    "label_args",  # with top-k soft labels, nullable
    "ipc",  # images per class, nullable
    "smoke",  # a smoke run's row (--smoke), nullable
    "teacher_arch",  # the teacher's architecture, nullable
]


def _trials(*rows: dict) -> pa.Table:
    return S.to_table(list(rows), S.TRIALS)


def _write_parquet(table: pa.Table, path: Path) -> None:
    write_atomic(path, lambda fh: pq.write_table(table, fh))


def test_schemas_have_the_contract_columns_in_order() -> None:
    assert S.TRIALS.names == TRIAL_COLUMNS
    assert S.TRIALS.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert S.TRIALS.field("stopped_early").type == pa.bool_()
    assert S.CURVES.names == ["sweep", "trial_id", "epoch", "step", "coreset_epochs",
                              "train_loss", "test_acc", "test_top5", "test_nll", "test_ece",
                              "val_acc", "val_top5", "val_nll", "val_ece"]
    assert S.SELECTIONS.names == ["selection_key", "dataset", "selector", "selector_args",
                                  "ratio", "seed", "index", "weight"]


def test_to_table_rejects_unknown_column() -> None:
    with pytest.raises(ValueError, match="bogus_metric"):
        _trials(make_trial_row() | {"bogus_metric": 1.0})


def test_to_table_rejects_missing_required_column() -> None:
    row = make_trial_row()
    del row["seed"]
    with pytest.raises(ValueError, match="seed"):
        _trials(row)
    with pytest.raises(ValueError, match="seed"):
        S.to_table(pd.DataFrame([row]), S.TRIALS)


def test_to_table_rejects_null_in_required_column() -> None:
    with pytest.raises(ValueError, match="dataset"):
        _trials(make_trial_row(dataset=None))


def test_missing_nullable_columns_become_null() -> None:
    row = make_trial_row()
    for name in ("error", "beta", "git_sha", "test_ece", "peak_memory_bytes"):
        del row[name]
    table = _trials(row)
    assert table.schema.equals(S.TRIALS)
    for name in ("error", "beta", "git_sha", "test_ece", "peak_memory_bytes"):
        assert table.column(name).null_count == 1


def test_to_table_casts_types_and_serialises_json() -> None:
    row = make_trial_row(ratio=1, seed=3.0, train_seconds=7, selector_args={"b": 1, "a": 2},
                         budget={"value": 30, "unit": "epochs"})
    table = _trials(row)
    assert table.schema.equals(S.TRIALS)
    got = table.to_pylist()[0]
    assert got["ratio"] == 1.0 and isinstance(got["ratio"], float)
    assert got["seed"] == 3 and isinstance(got["seed"], int)
    assert got["selector_args"] == '{"a": 2, "b": 1}'
    assert json.loads(got["budget"]) == {"unit": "epochs", "value": 30}
    with pytest.raises(ValueError, match="seed"):
        _trials(make_trial_row(seed=2.5))  # lossy cast refused


def test_to_table_accepts_a_dataframe_round_trip(tmp_path: Path) -> None:
    rows = [make_trial_row(trial_id=f"t{i}", seed=i, beta=None if i else 0.3) for i in range(3)]
    _write_parquet(_trials(*rows), tmp_path / "trials.parquet")
    frame = S.read_table(tmp_path / "trials.parquet", S.TRIALS)
    assert list(frame.columns) == TRIAL_COLUMNS
    again = S.to_table(frame, S.TRIALS)
    assert again.equals(_trials(*rows))


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "trials.parquet"
    _write_parquet(_trials(make_trial_row()), path)
    _write_parquet(_trials(make_trial_row(), make_trial_row(trial_id="t1")), path)
    assert os.listdir(tmp_path) == ["trials.parquet"]
    assert len(S.read_table(path, S.TRIALS)) == 2


def test_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "trials.parquet"
    _write_parquet(_trials(make_trial_row(test_acc=0.25)), path)
    before = path.read_bytes()

    def broken(table: pa.Table, where: object, **kwargs: object) -> None:
        where.write(b"PAR1 half a file")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        _write_parquet(_trials(make_trial_row(test_acc=0.75)), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["trials.parquet"]
    assert S.read_table(path, S.TRIALS)["test_acc"].tolist() == [0.25]


def test_files_written_before_a_nullable_column_existed_still_read(tmp_path: Path) -> None:
    old = _trials(make_trial_row()).drop_columns(["smoothing", "val_acc", "group_id"])
    pq.write_table(old, tmp_path / "old.parquet")
    frame = S.read_table(tmp_path / "old.parquet", S.TRIALS)
    assert list(frame.columns) == TRIAL_COLUMNS and frame["val_acc"].isna().all()


def test_read_corrupt_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "garbage.parquet"
    path.write_bytes(os.urandom(64) + b"PAR1")
    with pytest.raises(ValueError, match="garbage.parquet"):
        S.read_table(path, S.TRIALS)


def test_read_mismatching_schema_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "curves.parquet"
    _write_parquet(S.to_table([{"sweep": "s", "trial_id": "t", "epoch": 1, "step": 1,
                                "coreset_epochs": 1.0}], S.CURVES), path)
    with pytest.raises(ValueError, match="curves.parquet"):
        S.read_table(path, S.TRIALS)


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.parquet"):
        S.read_table(tmp_path / "absent.parquet", S.TRIALS)
