"""The packaged paper tables and the paper comparison in leaderboards."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from coretune.reports import tables as S
from coretune.reports.leaderboard import RowKey, leaderboard_tables, render_markdown
from coretune.reports.paper import (
    LABEL_MODE_TO_PAPER,
    PAPER_FILES,
    PAPER_METHOD,
    PAPER_TO_LABEL_MODE,
    full_dataset_accuracy,
    load_paper_tables,
    paper_reference,
)
from tests.reports.conftest import make_trial_row

SHARED = Path(__file__).parents[2].parent / "shared" / "paper_tables"
PACKAGED = resources.files("coretune.reports").joinpath("paper_tables")


@pytest.mark.parametrize("name", [*PAPER_FILES, "README.md"])
def test_packaged_tables_match_shared(name: str) -> None:
    """Beside the shared copy (a developer checkout) the files are identical; on a fresh
    clone the packaged tables hold the row counts their README states."""
    if SHARED.is_dir():
        assert PACKAGED.joinpath(name).read_bytes() == (SHARED / name).read_bytes()
    readme = PACKAGED.joinpath("README.md").read_text()
    assert "There are 397 rows" in readme and "There are 459 rows" in readme
    counts = {"soft_label_coresets.csv": 397, "elfs.csv": 459}
    if name in counts:
        assert len(pd.read_csv(PACKAGED.joinpath(name))) == counts[name]


_T = load_paper_tables()
MAIN_ROWS = list(_T[(_T["metric"] == "test_accuracy") & _T["param_name"].isna()
                    & _T["arch"].notna() & _T["method"].notna()
                    & _T["label_mode"].isin(["hard", "soft_teacher"]).fillna(False)
                    & (_T["method"] != "full_dataset").fillna(False)
                    & _T["selection_ratio"].notna()].itertuples())


@pytest.mark.parametrize("row", MAIN_ROWS[::7], ids=lambda r: f"{r.paper}-{r.table}-"
                         f"{r.dataset}-{r.method}-{r.label_mode}-{r.selection_ratio}")
def test_the_paper_join_finds_each_published_cell(row) -> None:
    """A run matching a packaged row's (dataset, arch, method, label mode, ratio) shows
    that row's figure beside its own."""
    from coretune.reports.paper import PAPER_METHOD, PAPER_TO_LABEL_MODE

    ours = {v: k for k, v in PAPER_METHOD.items()}.get(row.method, row.method)
    mode = PAPER_TO_LABEL_MODE[row.label_mode]
    trials = S.to_table([make_trial_row(trial_id=f"t{i}", dataset=row.dataset, arch=row.arch,
                                        selector=ours, label_mode=mode, seed=i,
                                        ratio=float(row.selection_ratio), test_acc=0.5)
                         for i in range(2)], S.TRIALS).to_pandas()
    (board,) = leaderboard_tables(trials)
    values = board.paper[RowKey(ours, mode), board.ratios[0]]
    assert any(v.mean == pytest.approx(float(row.mean)) for v in values)


def test_smoke_rows_are_never_set_beside_the_papers() -> None:
    """A smoke run's rows (``--smoke``) make a board of their own, without the published
    figures a real run of the same cells gets, and never share its cells."""
    from coretune.reports.leaderboard import SMOKE_NOTE

    row = MAIN_ROWS[0]
    ours = {v: k for k, v in PAPER_METHOD.items()}.get(row.method, row.method)
    mode = PAPER_TO_LABEL_MODE[row.label_mode]
    rows = [make_trial_row(trial_id=f"t{i}", dataset=row.dataset, arch=row.arch,
                           selector=ours, label_mode=mode, seed=i % 2,
                           ratio=float(row.selection_ratio), test_acc=0.5 + 0.1 * (i >= 2))
            | {"smoke": i >= 2} for i in range(4)]
    trials = S.to_table(rows, S.TRIALS).to_pandas()
    real, smoke = leaderboard_tables(trials)
    assert not real.smoke and real.paper and real.full_data is not None
    assert smoke.smoke and smoke.paper is None and smoke.full_data == []
    cell = (RowKey(ours, mode), real.ratios[0])
    assert real.cells[cell].mean == pytest.approx(50.0) and real.cells[cell].n == 2
    assert smoke.cells[cell].mean == pytest.approx(60.0) and smoke.cells[cell].n == 2
    text = render_markdown([real, smoke])
    assert f"## {row.dataset} / {row.arch} (smoke run)" in text and SMOKE_NOTE in text
    assert text.count("| paper ") == 1  # the real run's cell only
    import csv

    from coretune.reports.formats import render_csv, render_latex

    csv_rows = list(csv.reader(render_csv([real, smoke]).splitlines()))
    assert csv_rows[0][-1] == "smoke" and [r[-1] for r in csv_rows[1:]] == ["False", "True"]
    assert smoke.header().startswith("a smoke run (--smoke) · ")
    assert f"% {row.dataset} / {row.arch} (smoke run): a smoke run" in render_latex([smoke])
    older = trials.drop(columns="smoke")  # parts written before the column: not smoke
    assert [b.smoke for b in leaderboard_tables(older)] == [False]


def test_load_paper_tables_concatenates_both_files() -> None:
    t = load_paper_tables()
    n_rows = sum(len(PACKAGED.joinpath(n).read_text().strip().splitlines()) - 1
                 for n in PAPER_FILES)
    assert len(t) == n_rows
    assert set(t["paper"]) == {"soft_label_coresets", "elfs"}
    assert {"selection_ratio", "mean", "std", "metric", "label_mode"} <= set(t.columns)
    t.loc[:, "mean"] = -1.0  # callers get a copy, not the cached frame
    assert (load_paper_tables()["mean"] != -1.0).any()


def test_label_mode_mapping() -> None:
    assert LABEL_MODE_TO_PAPER == {"hard": "hard", "soft": "soft_teacher",
                                   "smooth": "label_smoothing", "kd": None}


def test_paper_reference_cifar100_resnet18() -> None:
    ref = paper_reference("cifar100", "resnet18")
    assert {"method", "label_mode", "selection_ratio", "mean", "std", "paper",
            "table"} <= set(ref.columns)
    assert not ref["label_mode"].isin(["soft_teacher", "label_smoothing"]).any()
    # soft_label_coresets.csv: T1, random, soft_teacher, 0.1 → 58.45 ± 0.08
    row = ref[(ref["method"] == "random") & (ref["label_mode"] == "soft")
              & (ref["table"] == "T1") & ((ref["selection_ratio"] - 0.1).abs() < 1e-9)]
    assert len(row) == 1
    assert row["mean"].iloc[0] == pytest.approx(58.45)
    assert row["std"].iloc[0] == pytest.approx(0.08)
    assert row["paper"].iloc[0] == "soft_label_coresets"
    # elfs.csv: T1, random, hard, pruning 50% → 71.1
    hard = ref[(ref["method"] == "random") & (ref["label_mode"] == "hard")
               & (ref["paper"] == "elfs") & (ref["table"] == "T1")
               & ((ref["selection_ratio"] - 0.5).abs() < 1e-9)]
    assert hard["mean"].tolist() == [pytest.approx(71.1)]
    full = full_dataset_accuracy("cifar100", "resnet18")
    assert 77.41 in full["mean"].tolist() and 78.7 in full["mean"].tolist()


def test_paper_reference_unknown_pair_is_empty() -> None:
    assert paper_reference("svhn", "lenet").empty


def _random_soft(ratio: float, accs: tuple[float, ...] = (0.55, 0.56)) -> pd.DataFrame:
    rows = [make_trial_row(trial_id=f"{mode}{seed}", label_mode=mode, ratio=ratio, seed=seed,
                           test_acc=acc)
            for mode in ("soft", "kd") for seed, acc in enumerate(accs)]
    return S.to_table(rows, S.TRIALS).to_pandas()


def test_leaderboard_shows_paper_value_beside_ours() -> None:
    (board,) = leaderboard_tables(_random_soft(0.1 + 1e-12))
    values = board.paper[RowKey("random", "soft"), board.ratios[0]]  # type: ignore[index]
    assert [v.mean for v in values] == [pytest.approx(58.45), pytest.approx(63.5)]  # T1, T3
    md = render_markdown([board])
    soft = [line for line in md.splitlines() if line.startswith("| random | soft |")]
    assert "paper" not in soft[0]  # our own table
    assert ("ours **55.50±0.71 (n=2)** \\| paper 58.45±0.08 (SL-T1) Δ -2.95; "
            "63.50±0.30 (SL-T3) Δ -8.00") in soft[1]
    kd = [line for line in md.splitlines() if line.startswith("| random | kd |")]
    assert "paper" not in kd[1]  # kd has no published counterpart
    assert "77.41 (SL-T1" in md  # full-data accuracy


def test_leaderboard_without_matching_ratio_shows_ours_only() -> None:
    (board,) = leaderboard_tables(_random_soft(0.123))
    assert board.paper == {}
    md = render_markdown([board])
    assert "paper 58.45" not in md
    assert "No published numbers" not in md
