"""Results as Parquet datasets of part files, on any filesystem (local, NFS, ``s3://…``).

``<out>/trials/``, ``<out>/curves/`` and ``<out>/selections/`` each hold part files named
``part-<ns timestamp>-<random>.parquet``, written whole as trials finish. Reading
concatenates the parts in name (time) order and keeps the newest row of each key —
(sweep, trial_id) for trials — so a re-run's row supersedes an earlier one and a part
written twice is harmless. A killed run loses at most the trials still running.

Parts accumulate one per finished Tune trial, and reading costs per part (a request each
on an object store), so :meth:`ResultsStore.compact` merges a table's parts into few
large ones — at the end of every sweep and by ``coretune compact DIR``, under the driver
lease. The merged file takes the newest merged part's timestamp, so it sorts after every
part it replaces and before any part written since (never shadowing a newer row); it is
committed before the parts it replaces are deleted, so a compaction killed at any point
loses nothing, and the rows it may leave twice are the same rows (reading keeps one).
"""

from __future__ import annotations

import io
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from coretune.errors import CacheError
from coretune.reports.tables import (
    BETA_SEARCH,
    CURVES,
    SELECTIONS,
    TRIALS,
    CorruptResultsError,
    conform,
    to_table,
)
from coretune.storage import Location
from coretune.storage.locks import Lock, stale_seconds


@dataclass(frozen=True)
class ResultTable:
    name: str
    schema: pa.Schema
    keys: tuple[str, ...]


TABLES = {t.name: t for t in (
    ResultTable("trials", TRIALS, ("sweep", "trial_id")),
    ResultTable("curves", CURVES, ("sweep", "trial_id", "epoch")),
    ResultTable("selections", SELECTIONS, ("selection_key", "index")),
    ResultTable("beta_search", BETA_SEARCH, ("sweep", "search_key", "beta")),
)}


#: at most this many parts are read one by one; more are scanned as one dataset
SMALL_READ = 8
#: rows per merged file of a compaction
COMPACT_ROWS = 1_000_000
_PART = re.compile(r"part-(\d{20})-[^/]*\.parquet$")


def _stamp(name: str) -> str | None:
    """The 20-digit nanosecond timestamp a part's name starts with (None if it has none)."""
    match = _PART.search(name)
    return match.group(1) if match else None


class ResultsStore:
    """The result tables of one output directory (a local path or any pyarrow URI)."""

    def __init__(self, uri: str):
        self.location = Location(uri)
        self.uri = self.location.uri

    def __reduce__(self):
        return (ResultsStore, (self.uri,))

    def write(self, table: str, rows: list[dict] | pd.DataFrame) -> str | None:
        """Write ``rows`` as one new part file of ``table``; its path (None if no rows)."""
        spec = TABLES[table]
        if len(rows) == 0:
            return None
        arrow = to_table(rows, spec.schema)
        buf = io.BytesIO()
        pq.write_table(arrow, buf)
        name = f"{table}/part-{time.time_ns():020d}-{uuid.uuid4().hex[:10]}.parquet"
        self.location.write_bytes(name, buf.getvalue())
        return name

    def parts(self, table: str) -> list[str]:
        return self.location.list_files(table, suffix=".parquet")

    def _read_part(self, spec: ResultTable, name: str) -> pa.Table:
        where = self.location.path(name)
        try:
            arrow = pq.read_table(io.BytesIO(self.location.read_bytes(name)))
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptResultsError(f"{where}: not a readable Parquet file ({exc})") from exc
        return conform(arrow, spec.schema, where)

    def _read_parts(self, spec: ResultTable, names: list[str]) -> pa.Table:
        """The rows of ``names`` in name order, with ``spec``'s schema.

        Many parts are scanned as one pyarrow dataset (C++ threads, no per-part Python
        work), each part's schema checked against the table's; a part the scan cannot
        cast is read alone, so its error names it."""
        if len(names) <= SMALL_READ:
            with ThreadPoolExecutor(max_workers=8) as pool:
                return pa.concat_tables(list(pool.map(
                    lambda n: self._read_part(spec, n), names)))
        paths = [self.location.path(n) for n in names]
        try:
            dataset = pads.dataset(paths, schema=spec.schema, format="parquet",
                                   filesystem=self.location.fs)
            arrow = dataset.to_table(columns=[*spec.schema.names, "__filename"])
            checked: set[pa.Schema] = set()  # parts share a few schemas: check each once
            for path, fragment in zip(paths, dataset.get_fragments(), strict=True):
                if fragment.physical_schema not in checked:
                    conform(fragment.physical_schema.empty_table(), spec.schema, path)
                    checked.add(fragment.physical_schema)
        except (pa.ArrowException, OSError):  # which part? read them one by one
            return pa.concat_tables([self._read_part(spec, n) for n in names])
        order = {path: i for i, path in enumerate(paths)}
        part = np.asarray([order[f] for f in arrow.column("__filename").to_pylist()])
        return arrow.drop_columns(["__filename"]).take(np.argsort(part, kind="stable"))

    def read_arrow(self, table: str) -> pa.Table:
        """Every part of ``table``, newest row per key (empty if none)."""
        spec = TABLES[table]
        names = self.parts(table)
        return self.newest_rows(spec, names) if names else spec.schema.empty_table()

    def read(self, table: str) -> pd.DataFrame:
        """Every part of ``table``, newest row per key, as a DataFrame (empty if none)."""
        return self.read_arrow(table).to_pandas().reset_index(drop=True)

    def compact(self, max_rows: int = COMPACT_ROWS) -> dict[str, tuple[int, int]]:
        """Merge each table's parts into files of at most ``max_rows`` rows (newest row
        per key); ``{table: (parts before, parts after)}`` of the tables compacted.

        The caller holds the driver lease (no part is written meanwhile; the merged files'
        names would keep a newer part unshadowed anyway, see the module docstring)."""
        done = {}
        for table, spec in TABLES.items():
            names = self.parts(table)
            stamp = _stamp(names[-1]) if names else None
            if len(names) < 2 or stamp is None:
                continue
            merged = self.newest_rows(spec, names)
            tag = uuid.uuid4().hex[:10]
            written = []
            for i, start in enumerate(range(0, max(merged.num_rows, 1), max_rows)):
                buf = io.BytesIO()
                pq.write_table(merged.slice(start, max_rows), buf, compression="zstd")
                written.append(f"{table}/part-{stamp}-c{tag}-{i:05d}.parquet")
                self.location.write_bytes(written[-1], buf.getvalue())
            with ThreadPoolExecutor(max_workers=16) as pool:
                list(pool.map(self.location.delete, [n for n in names if n not in written]))
            done[table] = (len(names), len(written))
        return done

    def newest_rows(self, spec: ResultTable, names: list[str]) -> pa.Table:
        """The newest row per key of the parts ``names`` of ``spec``'s table."""
        arrow = self._read_parts(spec, names)
        keep = ~arrow.select(list(spec.keys)).to_pandas().duplicated(keep="last").to_numpy()
        return arrow if keep.all() else arrow.filter(pa.array(keep))

    def has_results(self) -> bool:
        return bool(self.parts("trials"))

    def write_text(self, name: str, text: str) -> None:
        self.location.write_bytes(name, text.encode("utf-8"))

    def lease(self, stale_after: float | None = None) -> DriverLease:
        """Hold this output for one driver (see :class:`DriverLease`)."""
        return DriverLease(self, stale_after)


class OutputInUseError(CacheError):
    """Another live driver holds the output directory."""


class DriverLease:
    """One driver per output directory at a time: the :class:`~coretune.storage.locks.Lock`
    ``_DRIVER.lock`` (created exclusively, kept alive by a heartbeat); a second driver is
    refused with the holder's name.

    A lock whose heartbeat stopped (or whose process is gone, on this host) is taken over;
    the new holder then removes leftovers of killed writes (``*.tmp``).
    """

    NAME = "_DRIVER.lock"

    def __init__(self, results: ResultsStore, stale_after: float | None = None):
        self.results = results
        self.stale_after = stale_seconds(60.0) if stale_after is None else stale_after
        self.location = results.location
        self.lock = Lock(self.location, self.NAME, self.stale_after,
                         heartbeat=self.stale_after / 6)
        self.holder = self.lock.holder

    def __enter__(self) -> DriverLease:
        self.location.makedirs()
        if not self.lock.acquire():
            other = self.lock.current_holder()
            who = (f"{other.get('host', '?')}:{other.get('pid', '?')} "
                   f"since {other.get('since', '?')}")
            raise OutputInUseError(
                f"--out {self.results.uri} is in use by another driver ({who}); wait for it "
                f"to finish, or delete {self.location.path(self.NAME)} if that driver is gone")
        self._clean_leftovers()
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()

    def _clean_leftovers(self) -> None:
        for table in (*TABLES, ""):
            for name in self.location.list_files(table, suffix=".tmp"):
                self.location.delete(name)
