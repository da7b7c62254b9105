"""Leaderboards that read like the papers' tables: selectors × ratios, mean ± std over seeds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from coretune.reports.paper import paper_reference
from coretune.reports.schema import TRIALS, read_table

MODE_ORDER = {"hard": 0, "smooth": 1, "soft": 2, "kd": 3}


@dataclass
class Cell:
    mean: float
    std: float | None
    n: int
    best: bool = False
    paper: str | None = None

    def text(self) -> str:
        return f"{self.mean:.2f}" + ("" if self.std is None else f" ± {self.std:.2f}")


@dataclass
class Leaderboard:
    dataset: str
    arch: str
    ratios: list[float]
    rows: list[tuple[str, str, str]]  # (selector, selector_args, label_mode)
    cells: dict[tuple[int, int], Cell]
    teacher_test_acc: float | None
    n_trials: int
    seeds: list[int]
    has_paper: bool

    def title(self) -> str:
        teacher = ("" if self.teacher_test_acc is None
                   else f", teacher test acc {100 * self.teacher_test_acc:.2f}%")
        return (f"{self.dataset} / {self.arch}: test accuracy (%), mean ± std over seeds "
                f"{self.seeds}, {self.n_trials} trials{teacher}")

    def row_label(self, i: int) -> str:
        sel, args, mode = self.rows[i]
        return f"{sel}{'' if args in ('{}', '') else ' ' + args}", mode


def _paper_lookup(dataset: str, arch: str) -> dict[tuple[str, str, float], str]:
    ref = paper_reference(dataset, arch)
    out = {}
    for rec in ref.itertuples():
        std = "" if pd.isna(rec.std) else f" ± {rec.std:.2f}"
        out.setdefault((rec.method, rec.label_mode, round(rec.selection_ratio, 9)),
                       f"{rec.mean:.2f}{std}")
    return out


def leaderboard_tables(trials: pd.DataFrame) -> list[Leaderboard]:
    """One :class:`Leaderboard` per (dataset, arch) from finished (ok/stopped) trials."""
    done = trials[trials["status"].isin(["ok", "stopped"]) & trials["test_acc"].notna()]
    boards = []
    for (dataset, arch), grp in done.groupby(["dataset", "arch"], sort=True):
        ratios = sorted(grp["ratio"].unique().tolist())
        keys = sorted({(r.selector, r.selector_args, r.label_mode) for r in grp.itertuples()},
                      key=lambda k: (k[0], k[1], MODE_ORDER.get(k[2], 9)))
        papers = _paper_lookup(dataset, arch)
        cells: dict[tuple[int, int], Cell] = {}
        for i, (sel, args, mode) in enumerate(keys):
            for j, ratio in enumerate(ratios):
                acc = 100 * grp[(grp["selector"] == sel) & (grp["selector_args"] == args)
                                & (grp["label_mode"] == mode) & (grp["ratio"] == ratio)
                                ]["test_acc"].to_numpy()
                if acc.size:
                    paper = papers.get((sel, mode, round(ratio, 9))) if args == "{}" else None
                    cells[i, j] = Cell(float(acc.mean()),
                                       float(acc.std(ddof=1)) if acc.size > 1 else None,
                                       int(acc.size), paper=paper)
        for j in range(len(ratios)):
            col = [(i, c.mean) for (i, jj), c in cells.items() if jj == j]
            best = max(m for _, m in col)
            for i, m in col:
                cells[i, j].best = np.isclose(m, best)
        teacher = grp["teacher_test_acc"].dropna()
        boards.append(Leaderboard(dataset, arch, ratios, keys, cells,
                                  float(teacher.mean()) if len(teacher) else None, len(grp),
                                  sorted(grp["seed"].unique().tolist()), bool(papers)))
    return boards


def _cell_text(board: Leaderboard, i: int, j: int, bold: str, end: str) -> str:
    cell = board.cells.get((i, j))
    if cell is None:
        return "–"
    text = f"{bold}{cell.text()}{end}" if cell.best else cell.text()
    return text + (f" (paper {cell.paper})" if cell.paper else "")


def render_markdown(boards: list[Leaderboard]) -> str:
    """GitHub-flavoured tables; the best mean of each ratio column in **bold**."""
    out = ["# Leaderboard", ""]
    for b in boards:
        out += [f"## {b.title()}", ""]
        out.append("| selector | label mode | " + " | ".join(f"{r:g}" for r in b.ratios) + " |")
        out.append("|---|---|" + "---|" * len(b.ratios))
        for i in range(len(b.rows)):
            name, mode = b.row_label(i)
            cells = [_cell_text(b, i, j, "**", "**") for j in range(len(b.ratios))]
            out.append(f"| {name} | {mode} | " + " | ".join(cells) + " |")
        out.append("")
        out.append("Published numbers for the same selector, label mode and ratio are shown "
                   "as (paper …)." if b.has_paper else
                   f"No published numbers for {b.dataset}/{b.arch} in the paper tables.")
        out.append("")
    return "\n".join(out)


def render_rich(boards: list[Leaderboard], console: Console) -> None:
    for b in boards:
        table = Table(title=b.title(), title_justify="left")
        table.add_column("selector")
        table.add_column("label mode")
        for r in b.ratios:
            table.add_column(f"{r:g}", justify="right")
        for i in range(len(b.rows)):
            name, mode = b.row_label(i)
            table.add_row(name, mode, *[_cell_text(b, i, j, "[bold green]", "[/]")
                                        for j in range(len(b.ratios))])
        console.print(table)


def write_report(out_dir: Path, console: Console | None = None) -> Path:
    """Print the leaderboard of ``out_dir/trials.parquet`` and write ``leaderboard.md``."""
    from coretune.reports.schema import write_text_atomic

    path = Path(out_dir) / "trials.parquet"
    if not path.exists():
        raise FileNotFoundError(f"no trials.parquet in {out_dir}: run `coretune sweep` first")
    boards = leaderboard_tables(read_table(path, TRIALS))
    if console is not None:
        render_rich(boards, console)
    md = Path(out_dir) / "leaderboard.md"
    write_text_atomic(render_markdown(boards), md)
    return md
