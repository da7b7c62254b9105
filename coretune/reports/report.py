"""``coretune report DIR [DIR …] [--compare]``: every format of the leaderboards of one or
many run directories, with figures and provenance.

Written to ``--out`` (default: the first run directory): ``leaderboard.md`` (the Markdown
report), ``leaderboard.tex``, ``leaderboard.csv``, ``report.html`` (self-contained) and
``plots/*.png``. ``--compare`` lines the runs up cell by cell (``compare.md``): each run's
mean, the difference, and Welch's t-test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from coretune.errors import DataMissingError, UsageError
from coretune.reports.claims import soft_label_claims
from coretune.reports.formats import render_csv, render_latex, render_report_markdown
from coretune.reports.html import render_html
from coretune.reports.leaderboard import (
    Leaderboard,
    leaderboard_tables,
    ratio_label,
    render_rich,
    selector_label,
)
from coretune.reports.plots import all_figures
from coretune.reports.provenance import Provenance
from coretune.reports.results import ResultsStore
from coretune.reports.scaling import (
    accuracy_vs_compute,
    scaling_claims,
    scaling_frame,
    scaling_markdown,
)
from coretune.reports.stats import welch
from coretune.storage import Location


def read_runs(dirs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trials and β-search rows of every run, with a ``run`` column (the directory)."""
    trials, betas = [], []
    for d in dirs:
        results = ResultsStore(str(d))
        if not results.has_results():
            raise DataMissingError(f"no trial results under {results.location.path('trials')}:"
                                    f" run `coretune sweep --out {d}` first")
        trials.append(results.read("trials").assign(run=str(d)))
        betas.append(results.read("beta_search").assign(run=str(d)))
    return pd.concat(trials, ignore_index=True), pd.concat(betas, ignore_index=True)


def compare_runs(trials: pd.DataFrame, dirs: list[str]) -> str:
    """Cell by cell, run A against run B: means, difference, Welch's t-test."""
    a, b = dirs[0], dirs[1]
    boards = {d: {(x.dataset, x.arch, x.smoke): x
                  for x in leaderboard_tables(trials[trials["run"] == d])}
              for d in (a, b)}
    lines = [f"# {a} vs {b}", "", "| dataset / arch | selector | label mode | ratio | "
             f"{a} | {b} | Δ (B − A) | p (Welch) |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for key in sorted(set(boards[a]) & set(boards[b])):
        ba, bb = boards[a][key], boards[b][key]
        for row, ratio in ((row, r) for row in ba.rows for r in ba.ratios):  # table order
            ca, cb = ba.cells.get((row, ratio)), bb.cells.get((row, ratio))
            if ca is None or cb is None:
                continue
            p = welch(ca.values, cb.values)
            lines.append(f"| {ba.name} | {selector_label(row)} | {row.label_mode} | "
                         f"{ratio_label(ratio)} | {ca.text()} | {cb.text()} | "
                         f"{cb.mean - ca.mean:+.2f} | {'–' if p is None else f'{p:.3f}'} |")
    return "\n".join(lines) + "\n"


def _print_claims(boards: list[Leaderboard], console: Console) -> None:
    for b in boards:
        for claim in soft_label_claims(b):
            console.print(f"{b.dataset}/{b.arch}: {claim.text}: {claim.verdict()} "
                          f"({claim.evidence})", markup=False, highlight=False)


def write_report(dirs: str | Path | list, console: Console | None = None,
                 out: str | None = None, compare: bool = False, figures: bool = True,
                 extra_figures: dict[str, bytes] | None = None) -> str:
    """Print the leaderboards of ``dirs`` and write every format; the Markdown's path.
    ``extra_figures`` (e.g. the coreset difficulty histogram the driver draws from the
    artifact store) are written and embedded beside the report's own."""
    dirs = [str(d) for d in (dirs if isinstance(dirs, list | tuple) else [dirs])]
    if compare and len(dirs) != 2:
        raise UsageError(f"--compare needs exactly two run directories, got {len(dirs)}")
    trials, betas = read_runs(dirs)
    boards = leaderboard_tables(trials)
    console = console if console is not None else Console()
    render_rich(boards, console)
    _print_claims(boards, console)
    target = Location(out or dirs[0])
    provenance = Provenance.of(trials, dirs)
    target.write_bytes("leaderboard.md",
                       render_report_markdown(boards, provenance).encode("utf-8"))
    target.write_bytes("leaderboard.tex", render_latex(boards).encode("utf-8"))
    target.write_bytes("leaderboard.csv", render_csv(boards).encode("utf-8"))
    figs: dict[str, bytes] = {}
    if figures:
        figs = all_figures(boards, trials, betas, extra_figures)
        for name, png in figs.items():
            target.write_bytes(f"plots/{name}.png", png)
    target.write_bytes("report.html", render_html(
        boards, figs, provenance, f"coretune report: {', '.join(dirs)}").encode("utf-8"))
    if compare:
        target.write_bytes("compare.md", compare_runs(trials, dirs).encode("utf-8"))
    _scaling(trials, target, console, figures)
    return target.path("leaderboard.md")


def _scaling(trials: pd.DataFrame, target: Location, console: Console, figures: bool) -> None:
    """A compute-aligned sweep's scaling report (Hard Truths): ``scaling.md``, the claims
    on the console and ``plots/accuracy_vs_compute_*.png``."""
    frame = scaling_frame(trials)
    if frame.empty:
        return
    target.write_bytes("scaling.md", scaling_markdown(frame).encode("utf-8"))
    for (dataset, arch), part in frame.groupby(["dataset", "arch"]):
        for claim in scaling_claims(part):
            console.print(f"{dataset}/{arch}: {claim.text}: {claim.verdict()} "
                          f"({claim.evidence})", markup=False, highlight=False)
    if figures:
        for name, png in accuracy_vs_compute(frame).items():
            target.write_bytes(f"plots/{name}.png", png)


__all__ = ["compare_runs", "read_runs", "write_report"]
