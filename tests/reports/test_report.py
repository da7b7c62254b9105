"""The full report: label-controlled gains and Welch t-tests on a hand-built table, the
papers' claims, every format written (Markdown and LaTeX against snapshots), run
comparison, and the HTML page rendered in headless Chromium."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from scipy.stats import t as student_t

from coretune.reports.claims import soft_label_claims
from coretune.reports.formats import render_csv, render_latex, render_report_markdown
from coretune.reports.leaderboard import RowKey, leaderboard_tables
from coretune.reports.report import write_report
from coretune.reports.results import ResultsStore
from coretune.reports.stats import gains
from tests.reports.test_leaderboard import _frame, _rows

SNAPSHOTS = Path(__file__).parent / "snapshots"


def welch_by_hand(a: list[float], b: list[float]) -> float:
    """Welch's t and Welch–Satterthwaite degrees of freedom, two-sided p."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(2 * student_t.sf(abs(t), df))


@pytest.fixture
def board():
    return leaderboard_tables(_frame(_rows()))[1]  # cifar100 / resnet18


def test_gains_to_random_under_the_same_labels(board):
    same = gains(board)
    # ccs hard [40, 42, 47] vs random hard [41, 43, 45]: equal means, t = 0, p = 1
    g = same[RowKey("ccs", "hard"), 0.1]
    assert g.delta == pytest.approx(0.0) and g.p == pytest.approx(1.0) and not g.significant
    # ccs soft [60, 61, 65] vs random soft [55, 58, 61]: +4 points, p ≈ 0.16
    g = same[RowKey("ccs", "soft"), 0.1]
    assert g.delta == pytest.approx(4.0)
    assert g.p == pytest.approx(welch_by_hand([60, 61, 65], [55, 58, 61]))
    assert 0.1 < g.p < 0.2 and not g.significant and (g.n, g.n_ref) == (3, 3)
    assert (RowKey("random", "hard"), 0.1) not in same  # Random is the reference


def test_gains_to_random_with_soft_labels(board):
    soft = gains(board, against="soft")
    # ccs hard [40, 42, 47] vs random soft [55, 58, 61]: −15 points, p ≈ 0.006: significant
    g = soft[RowKey("ccs", "hard"), 0.1]
    assert g.delta == pytest.approx(-15.0) and g.significant
    assert g.p == pytest.approx(welch_by_hand([40, 42, 47], [55, 58, 61]))
    assert g.text() == "-15.00*"
    g = soft[RowKey("random", "hard"), 0.3]  # [51, 55, 56] vs [70, 71, 75]
    assert g.delta == pytest.approx(-18.0) and g.significant


def test_best_bold_and_second_underlined(board):
    assert board.second == {0.1: [RowKey("random", "soft")], 0.3: [RowKey("ccs", "soft")]}
    md = render_report_markdown([board])
    line = next(x for x in md.splitlines() if x.startswith("| random | soft |"))
    assert "<u>58.00±3.00 (n=3)</u>" in line and "**72.00±2.65 (n=3)**" in line
    tex = render_latex([board])
    assert "\\textbf{62.00$\\pm$2.65}" in tex and "\\underline{58.00$\\pm$3.00}" in tex


def test_the_papers_claims_on_a_hand_built_board(board):
    gains_claim, near_claim, lift_claim = soft_label_claims(board)
    assert gains_claim.holds is True  # ccs +19, random +15 at 10%
    assert "ccs +19.00" in gains_claim.evidence and "random +15.00" in gains_claim.evidence
    assert near_claim.holds is False  # at 10%: ccs soft 62 ± 2.65, Random 58 (gap 4)
    assert "gap 4.00" in near_claim.evidence
    assert lift_claim.holds is True  # mean lift 17.0 at 10%, 16.5 at 30%
    assert "+17.00" in lift_claim.evidence and "+16.50" in lift_claim.evidence


def test_csv_has_one_row_per_cell(board):
    df = pd.read_csv(io.StringIO(render_csv([board])))
    assert len(df) == 8
    row = df[(df["selector"] == "ccs") & (df["label_mode"] == "soft") & (df["ratio"] == 0.1)]
    assert row["mean"].item() == pytest.approx(62.0) and row["rank"].item() == "best"
    assert row["delta_random"].item() == pytest.approx(4.0)
    assert row["delta_random_soft"].item() == pytest.approx(4.0)


@pytest.mark.parametrize("name,render", [("report.md", render_report_markdown),
                                         ("leaderboard.tex", render_latex)])
def test_markdown_and_latex_snapshots(name, render):
    boards = leaderboard_tables(_frame(_rows()))
    text = render(boards)
    assert text == (SNAPSHOTS / name).read_text(), f"regenerate {SNAPSHOTS / name} if intended"


@pytest.fixture
def run(tmp_path):
    ResultsStore(str(tmp_path / "a")).write("trials", _rows())
    return tmp_path / "a"


def test_write_report_writes_every_format(run):
    with pytest.raises(FileNotFoundError, match="no trial results"):
        write_report(run.parent / "nothing", Console(file=io.StringIO()))
    buf = io.StringIO()
    md = write_report(run, Console(file=buf, width=250))
    assert md == str(run / "leaderboard.md")
    names = {p.name for p in run.iterdir()}
    assert {"leaderboard.md", "leaderboard.tex", "leaderboard.csv", "report.html",
            "plots"} <= names
    plots = sorted(p.name for p in (run / "plots").iterdir())
    assert "accuracy_vs_ratio_cifar100_resnet18.png" in plots and "trial_time.png" in plots
    page = (run / "report.html").read_text()
    assert "data:image/png;base64," in page and "<table class='sortable'>" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    text = (run / "leaderboard.md").read_text()
    assert "## Provenance" in text and "torch: 2.0" in text
    assert "does not hold" in buf.getvalue()  # the claims are printed too


def test_compare_two_runs(run, tmp_path):
    rows = _rows()
    for r in rows:
        if r["test_acc"] is not None:
            r["test_acc"] += 0.01  # run B: one point better everywhere
    ResultsStore(str(tmp_path / "b")).write("trials", rows)
    write_report([str(run), str(tmp_path / "b")], Console(file=io.StringIO()),
                 out=str(tmp_path / "both"), compare=True, figures=False)
    cmp = (tmp_path / "both" / "compare.md").read_text()
    line = next(x for x in cmp.splitlines() if "| ccs | soft | 10% |" in x)
    assert "+1.00" in line
    with pytest.raises(ValueError, match="exactly two"):
        write_report([str(run)], Console(file=io.StringIO()), compare=True)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed here (Debian's "
                    "chromium package); .ci/run installs it where it can")
def test_html_page_renders_in_headless_chromium(run, tmp_path):
    write_report(run, Console(file=io.StringIO()))
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'u'}",
                    f"--screenshot={shot}", "--window-size=1200,2400",
                    (run / "report.html").as_uri()], check=True, capture_output=True,
                   timeout=120)
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[0] >= 2000 and pixels.std() > 0.05  # not blank
    # the best cells' green background and the plots' colours are on the page
    green = np.all(np.abs(pixels - np.array([0xe6, 0xf4, 0xe6]) / 255) < 0.02, axis=-1)
    assert green.sum() > 100
    saturated = (pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.4
    assert saturated.sum() > 1000
