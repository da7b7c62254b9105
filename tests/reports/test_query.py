"""The README's ways of reading results return the de-duplicated rows the store returns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from coretune.reports.results import ResultsStore
from tests.reports.conftest import FINISHED, make_trial_row

README = Path(__file__).parents[2] / "README.md"


def _readme_sql() -> str:
    block = re.search(r"```sql\n(.*?)```", README.read_text(), re.S)
    assert block, "README lost its DuckDB example"
    return block.group(1)


def test_readme_duckdb_query_keeps_the_newest_row_of_each_trial(tmp_path, monkeypatch):
    duckdb = pytest.importorskip("duckdb")
    results = ResultsStore(str(tmp_path / "runs" / "demo"))
    # a trial that failed, then succeeded on a re-run: two part files, one trial
    results.write("trials", [make_trial_row(trial_id="a", status="error", test_acc=None,
                                            error="boom")])
    results.write("trials", [make_trial_row(trial_id="a", test_acc=0.6,
                                            finished_at=FINISHED.replace(hour=5)),
                             make_trial_row(trial_id="b", seed=1, test_acc=0.4)])
    monkeypatch.chdir(tmp_path)
    rows = duckdb.sql(_readme_sql()).fetchall()
    assert rows == [("random", "hard", 0.1, 50.0, 2)]
    store = results.read("trials")
    assert len(store) == 2 and 100 * store["test_acc"].mean() == pytest.approx(50.0)
