"""Results as Parquet datasets of part files, on any filesystem (local, NFS, ``s3://…``).

``<out>/trials/``, ``<out>/curves/`` and ``<out>/selections/`` each hold part files named
``part-<ns timestamp>-<random>.parquet``, written whole as trials finish; nothing is ever
rewritten. Reading concatenates the parts in name (time) order and keeps the newest row of
each key — (sweep, trial_id) for trials — so a re-run's row supersedes an earlier one and
a part written twice is harmless. A killed run loses at most the trials still running.
"""

from __future__ import annotations

import io
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
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
from coretune.storage import Location, Lock, stale_seconds


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

    def read(self, table: str) -> pd.DataFrame:
        """Every part of ``table``, newest row per key, as a DataFrame (empty if none)."""
        spec = TABLES[table]
        names = self.parts(table)
        if not names:
            return spec.schema.empty_table().to_pandas()
        with ThreadPoolExecutor(max_workers=8) as pool:
            tables = list(pool.map(lambda n: self._read_part(spec, n), names))
        frame = pa.concat_tables(tables).to_pandas()
        frame = frame.drop_duplicates(subset=list(spec.keys), keep="last")
        return frame.reset_index(drop=True)

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
    """One driver per output directory at a time: the :class:`~coretune.storage.Lock`
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
