"""Arrow schemas of the result tables, their conversion, and reading single Parquet files.

``TRIALS`` is the one-row-per-student table (docs/design.md, "Results"), ``CURVES`` the
per-report curves keyed by (sweep, trial_id, epoch), ``SELECTIONS`` the selected indices
keyed by (selection_key, index) and ``BETA_SEARCH`` ELFS's β curves keyed by (sweep,
search_key, beta). Sweeps write these as part files (:mod:`coretune.reports.results`);
every whole-file write goes through :func:`coretune.storage.write_atomic`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from coretune.errors import CacheError

_STR, _F64, _I64 = pa.string(), pa.float64(), pa.int64()
_TS = pa.timestamp("us", tz="UTC")


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, typ, nullable=nullable) for name, typ, nullable in fields])


TRIALS = _schema(
    ("sweep", _STR, False), ("trial_id", _STR, False), ("status", _STR, False),
    ("error", _STR, True), ("dataset", _STR, False), ("arch", _STR, False),
    ("selector", _STR, False), ("selector_args", _STR, False), ("ratio", _F64, False),
    # nullable: a trial whose selection failed has no coreset size
    ("n_selected", _I64, True), ("label_mode", _STR, False), ("tau", _F64, False),
    ("lam", _F64, False), ("eps", _F64, False), ("beta", _F64, True), ("seed", _I64, False),
    ("budget", _STR, False), ("teacher_key", _STR, True), ("teacher_test_acc", _F64, True),
    ("test_acc", _F64, True), ("test_top5", _F64, True), ("test_nll", _F64, True),
    ("test_ece", _F64, True), ("epochs_run", _F64, False), ("stopped_early", pa.bool_(), False),
    ("select_seconds", _F64, False), ("train_seconds", _F64, False),
    ("peak_memory_bytes", _I64, True), ("device", _STR, False),
    ("coretune_version", _STR, False), ("git_sha", _STR, True), ("torch_version", _STR, False),
    ("ray_version", _STR, False), ("started_at", _TS, False), ("finished_at", _TS, False),
    # added by the middle-layer rebuild (after the original columns, all nullable)
    ("smoothing", _STR, True), ("val_acc", _F64, True), ("val_top5", _F64, True),
    ("val_nll", _F64, True), ("val_ece", _F64, True), ("metric", _STR, True),
    ("data_fingerprint", _STR, True), ("selection_key", _STR, True), ("group_id", _STR, True),
    ("arch_args", _STR, True), ("trial_spec", _STR, True), ("diverged_at_step", _I64, True),
    ("retries", _I64, True),
    ("label_args", _STR, True),  # added with top-k soft labels; null in older parts: {}
    ("ipc", _I64, True),  # images per class (Hard Truths); null for ratio trials
    ("smoke", pa.bool_(), True),  # a smoke run's row (--smoke); null in older parts: false
    ("teacher_arch", _STR, True),  # the teacher's architecture (teachers as a sweep axis)
)

CURVES = _schema(
    ("sweep", _STR, False), ("trial_id", _STR, False), ("epoch", _I64, False),
    ("step", _I64, False), ("coreset_epochs", _F64, False), ("train_loss", _F64, True),
    ("test_acc", _F64, True), ("test_top5", _F64, True), ("test_nll", _F64, True),
    ("test_ece", _F64, True), ("val_acc", _F64, True), ("val_top5", _F64, True),
    ("val_nll", _F64, True), ("val_ece", _F64, True),
)

SELECTIONS = _schema(
    ("selection_key", _STR, False), ("dataset", _STR, False), ("selector", _STR, False),
    ("selector_args", _STR, False), ("ratio", _F64, False), ("seed", _I64, False),
    ("index", _I64, False), ("weight", _F64, True),
)

#: ELFS's β search: one row per β tried (in grid order) of each search; ``heldout_acc`` is
#: on the pseudo-labelled 10 % (what β* is chosen on), ``test_matched_acc`` the test accuracy
#: with the student's clusters matched to the classes (ground truth: reported, never used)
BETA_SEARCH = _schema(
    ("sweep", _STR, False), ("search_key", _STR, False), ("dataset", _STR, False),
    ("ratio", _F64, False), ("beta", _F64, False), ("heldout_acc", _F64, False),
    ("test_matched_acc", _F64, True), ("status", _STR, False), ("reports", _I64, False),
    ("chosen", pa.bool_(), False), ("trials_run", _I64, False), ("grid_size", _I64, False),
    ("scheduler", _STR, False),
)

TRIAL_STATUSES = ("ok", "stopped", "diverged", "error")
JSON_COLUMNS = frozenset({"selector_args", "budget", "arch_args", "trial_spec"})


def _column_values(rows: list[dict] | pd.DataFrame, name: str, n: int) -> Any:
    if isinstance(rows, pd.DataFrame):
        values: Any = rows[name] if name in rows.columns else [None] * n
    else:
        values = [row.get(name) for row in rows]
    if name in JSON_COLUMNS:
        values = [json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
                  for v in values]
    return values


def _to_array(values: Any, field: pa.Field) -> pa.Array:
    if not pa.types.is_integer(field.type):  # pa.array(2.5, type=int64) would truncate
        try:
            return pa.array(values, type=field.type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            pass
    try:  # e.g. 3.0 for an int64 column: infer, then cast without losing information
        return pa.array(values, from_pandas=True).cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError,
            ValueError, OverflowError) as exc:
        raise ValueError(f"column {field.name!r}: cannot convert to {field.type}: {exc}") from exc


def to_table(rows: list[dict] | pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Rows (dicts or a DataFrame) as a table of exactly ``schema``, types cast.

    Missing nullable columns become null; a missing non-nullable column, a null in one, or a
    column the schema does not know raises ValueError naming it. Dict/list values of the
    JSON columns (selector_args, budget) are serialised with sorted keys.
    """
    if isinstance(rows, pd.DataFrame):
        present = [str(c) for c in rows.columns]
        n = len(rows)
    else:
        rows = list(rows)
        present = list(dict.fromkeys(k for row in rows for k in row))
        n = len(rows)
    unknown = [c for c in present if c not in schema.names]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown} (not in schema: {schema.names})")
    missing = [f.name for f in schema if not f.nullable and f.name not in present]
    if missing and (n > 0 or isinstance(rows, pd.DataFrame)):
        raise ValueError(f"missing required column(s) {missing}")
    arrays = []
    for field in schema:
        arr = _to_array(_column_values(rows, field.name, n), field)
        if not field.nullable and arr.null_count:
            raise ValueError(f"column {field.name!r} is not nullable but has "
                             f"{arr.null_count} null value(s)")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)


class CorruptResultsError(CacheError, ValueError):
    """A result file that is not readable Parquet or does not match its table's schema."""


def _read_arrow(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptResultsError(f"{path}: not a readable Parquet file ({exc})") from exc


def conform(table: pa.Table, schema: pa.Schema, path: Path | str) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in order and types.

    A nullable column the file lacks (written before the column existed) becomes null;
    a missing required column, an unknown column or a type that does not cast raises
    :class:`CorruptResultsError` naming ``path``.
    """
    names = table.schema.names
    missing = [f.name for f in schema if f.name not in names and not f.nullable]
    extra = [n for n in names if n not in schema.names]
    if missing or extra:
        raise CorruptResultsError(f"{path}: does not match the expected schema "
                         f"(missing columns {missing}, unexpected columns {extra})")
    for f in schema:
        if f.name not in names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    try:
        return table.select(schema.names).cast(schema, safe=True)
    except (pa.ArrowException, ValueError) as exc:
        raise CorruptResultsError(
            f"{path}: column types do not match the expected schema ({exc})") \
            from exc


def read_table(path: str | Path, schema: pa.Schema) -> pd.DataFrame:
    """The Parquet file at ``path`` as a DataFrame with ``schema``'s columns, in order.

    FileNotFoundError when absent; :class:`CorruptResultsError` naming ``path`` when the
    file is corrupt or its columns/types do not match ``schema``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return conform(_read_arrow(path), schema, path).to_pandas()
