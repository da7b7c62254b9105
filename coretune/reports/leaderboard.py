"""Leaderboards that read like the papers' tables: (selector, label mode) × ratio.

Each cell is the mean ± std (ddof=1) over seeds of the test accuracy in percent of the
trials that finished (status ok, or stopped early by the scheduler) with an accuracy; error
rows are left out. One board per (dataset, arch), with the papers' numbers beside ours where
the paper tables have the same method, label mode and selection ratio.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from coretune.reports.paper import PAPER_METHOD, PAPER_SHORT, paper_reference

MODE_ORDER = ("hard", "smooth", "soft", "kd")
#: settings that tell apart rows of one (selector, label_mode) when a sweep varies them
CONFIG_COLUMNS = ("selector_args", "arch_args", "tau", "lam", "eps", "beta", "budget",
                  "label_args")
#: JSON columns of arguments, read as {} where a row has none (older parts lack label_args)
_ARGS_COLUMNS = {"selector_args": "", "arch_args": "arch", "label_args": "labels"}
RATIO_TOL = 1e-9
SMOKE_NOTE = ("A smoke run (coretune sweep --smoke: a shrunk space): its numbers are never "
              "compared with the papers.")


class RowKey(NamedTuple):
    selector: str
    label_mode: str
    config: str = ""  # "tau=4.0" etc. only when the sweep varies a setting within the row


@dataclass(frozen=True)
class Cell:
    mean: float  # percent
    std: float | None  # ddof=1; None with a single seed
    n: int  # number of seeds (trials)
    values: tuple[float, ...] = ()  # the per-seed accuracies (percent), for the t-tests

    def text(self) -> str:
        spread = "" if self.std is None else f"±{self.std:.2f}"
        return f"{self.mean:.2f}{spread} (n={self.n})"


@dataclass(frozen=True)
class PaperValue:
    paper: str
    table: str
    mean: float
    std: float | None
    encoder: str | None = None

    def text(self) -> str:
        spread = "" if self.std is None else f"±{self.std:.2f}"
        where = f"{PAPER_SHORT.get(self.paper, self.paper)}-{self.table}"
        return f"{self.mean:.2f}{spread} ({where}{' ' + self.encoder if self.encoder else ''})"


@dataclass
class Leaderboard:
    dataset: str
    arch: str
    ratios: list[float]
    rows: list[RowKey]
    cells: dict[tuple[RowKey, float], Cell]
    best: dict[float, list[RowKey]]
    second: dict[float, list[RowKey]]
    teacher_test_acc: float | None  # percent, mean over the rows that have one
    n_trials: int
    n_stopped: int
    n_excluded: int  # error rows and rows without an accuracy
    seeds: list[int]
    paper: dict[tuple[RowKey, float], list[PaperValue]] | None = None  # None: none published
    full_data: list[PaperValue] = field(default_factory=list)
    smoke: bool = False  # a smoke run's rows (--smoke): never set beside the papers

    @property
    def name(self) -> str:
        return f"{self.dataset} / {self.arch}" + (" (smoke run)" if self.smoke else "")

    @property
    def title(self) -> str:
        teacher = "" if self.teacher_test_acc is None else \
            f" (teacher {self.teacher_test_acc:.2f}%)"
        return f"{self.name}{teacher}"

    def header(self) -> str:
        teacher = "n/a" if self.teacher_test_acc is None else f"{self.teacher_test_acc:.2f}%"
        trials = f"{self.n_trials} trials"
        if self.n_stopped:
            trials += f", {self.n_stopped} stopped early"
        if self.n_excluded:
            trials += f", {self.n_excluded} excluded (error or no accuracy)"
        smoke = "a smoke run (--smoke) · " if self.smoke else ""
        return (f"{smoke}dataset {self.dataset} · arch {self.arch} · teacher test acc "
                f"{teacher} · {trials} · seeds {seed_ranges(self.seeds)}")

    def cell(self, selector: str, label_mode: str, ratio: float,
             config: str = "") -> Cell | None:
        return self.cells.get((RowKey(selector, label_mode, config), _ratio_key(ratio)))

    def is_best(self, row: RowKey, ratio: float) -> bool:
        return row in self.best.get(_ratio_key(ratio), [])

    def is_second(self, row: RowKey, ratio: float) -> bool:
        return row in self.second.get(_ratio_key(ratio), [])


def seed_ranges(seeds: list[int]) -> str:
    """Seeds as runs of consecutive numbers: ``0–99``, ``0, 1, 2``, ``0–4, 7, 9–11``
    (three or more consecutive seeds are a range), so a caption stays one line at scale."""
    runs: list[list[int]] = []
    for seed in sorted(set(seeds)):
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 2 else ", ".join(map(str, r))
                     for r in runs)


def _ratio_key(ratio: float) -> float:
    return round(float(ratio), 9)


def _row_order(row: RowKey) -> tuple:
    mode = MODE_ORDER.index(row.label_mode) if row.label_mode in MODE_ORDER else len(MODE_ORDER)
    return row.selector, row.config, mode, row.label_mode


def _configs(group: pd.DataFrame) -> pd.Series:
    """Per row, the settings that differ between trials of one (selector, label_mode, ratio)
    (i.e. that the sweep varies besides the seed); "" when there are none."""
    out = pd.Series("", index=group.index, dtype=object)
    group = group.assign(**{c: group[c].fillna("{}") for c in _ARGS_COLUMNS if c in group})
    group = group.assign(teacher=teacher_labels(group))  # teachers as a sweep axis
    for _, sub in group.groupby(["selector", "label_mode"], sort=False):
        cols = [c for c in (*CONFIG_COLUMNS, "teacher") if c in sub
                and (sub[c].astype(str).groupby(sub["_ratio"]).nunique() > 1).any()]
        for idx, rec in sub[cols].iterrows():
            out[idx] = ", ".join(_setting(c, rec[c]) for c in cols)
    return out


def teacher_labels(rows: pd.DataFrame) -> pd.Series:
    """Each row's teacher as ``arch (test accuracy)`` (its ``teacher_arch`` and
    ``teacher_test_acc`` columns), "" for a student without one (or a row written before
    the column): what tells the cells of two teachers apart."""
    none = pd.Series(None, index=rows.index, dtype=object)
    arch = rows["teacher_arch"] if "teacher_arch" in rows else none
    acc = rows["teacher_test_acc"] if "teacher_test_acc" in rows else none
    text = arch.where(arch.notna(), "").astype(str)
    pct = acc.map(lambda a: f" ({100 * float(a):.1f}%)" if pd.notna(a) else "")
    return (text + pct.where(text != "", "")).astype(object)


def _setting(column: str, value: object) -> str:
    """``k=v`` text of one varied setting; selector and arch args are unpacked from JSON."""
    if column in _ARGS_COLUMNS:
        args = json.loads(str(value)) if isinstance(value, str) and value else {}
        text = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(args.items())) or "default"
        prefix = _ARGS_COLUMNS[column]
        return f"{prefix}({text})" if prefix else text
    return f"{column}={value}"


def _paper_values(dataset: str, arch: str, rows: list[RowKey],
                  ratios: list[float]) -> dict[tuple[RowKey, float], list[PaperValue]] | None:
    ref = paper_reference(dataset, arch)
    if ref.empty:
        return None
    ref = ref[ref["param_name"].isna() & ref["label_mode"].notna()]  # main-table cells only
    out: dict[tuple[RowKey, float], list[PaperValue]] = {}
    for row in rows:
        method = PAPER_METHOD.get(row.selector, row.selector)
        mine = ref[(ref["method"] == method) & (ref["label_mode"] == row.label_mode)]
        for ratio in ratios:
            hits = mine[(mine["selection_ratio"] - ratio).abs() <= RATIO_TOL]
            tables: dict[tuple, list[str]] = {}  # the same value repeated in several tables
            for h in hits.itertuples():
                value = (str(h.paper), float(h.mean), None if pd.isna(h.std) else float(h.std),
                         None if pd.isna(h.encoder) else str(h.encoder))
                tables.setdefault(value, []).append(str(h.table))
            if tables:
                out[row, ratio] = [PaperValue(paper, "/".join(names), mean, std, encoder)
                                   for (paper, mean, std, encoder), names in tables.items()]
    return out


def _full_data(dataset: str, arch: str) -> list[PaperValue]:
    ref = paper_reference(dataset, arch)
    return [PaperValue(str(h.paper), str(h.table), float(h.mean), None)
            for h in ref[ref["method"] == "full_dataset"].itertuples()]


def _board(dataset: str, arch: str, everything: pd.DataFrame, smoke: bool = False
           ) -> Leaderboard | None:
    """The board of one (dataset, arch); a smoke run's (``smoke``) is never matched to the
    papers' cells or full-data accuracies."""
    done = everything[everything["status"].isin(["ok", "stopped"])
                      & everything["test_acc"].notna()].copy()
    if done.empty:
        return None
    done["_ratio"] = done["ratio"].map(_ratio_key)
    done["_config"] = _configs(done)
    cells: dict[tuple[RowKey, float], Cell] = {}
    for (sel, mode, config, ratio), grp in done.groupby(
            ["selector", "label_mode", "_config", "_ratio"], sort=False):
        acc = grp["test_acc"].astype(float) * 100.0
        std = float(acc.std(ddof=1)) if len(acc) >= 2 else None
        cells[RowKey(str(sel), str(mode), str(config)), float(ratio)] = \
            Cell(float(acc.mean()), std, len(acc), tuple(float(a) for a in acc))
    rows = sorted({row for row, _ in cells}, key=_row_order)
    ratios = sorted({ratio for _, ratio in cells})
    best: dict[float, list[RowKey]] = {}
    second: dict[float, list[RowKey]] = {}
    for ratio in ratios:
        column = {row: c.mean for (row, r), c in cells.items() if r == ratio}
        levels = sorted({round(m, 9) for m in column.values()}, reverse=True)
        best[ratio] = [row for row in rows if row in column
                       and math.isclose(column[row], levels[0])]
        second[ratio] = [] if len(levels) < 2 else [
            row for row in rows if row in column and math.isclose(column[row], levels[1])]
    teacher = done["teacher_test_acc"].dropna()
    return Leaderboard(
        dataset=dataset, arch=arch, ratios=ratios, rows=rows, cells=cells, best=best,
        second=second,
        teacher_test_acc=float(teacher.mean()) * 100.0 if len(teacher) else None,
        n_trials=len(done), n_stopped=int((done["status"] == "stopped").sum()),
        n_excluded=len(everything) - len(done),
        seeds=sorted(int(s) for s in done["seed"].unique()),
        paper=None if smoke else _paper_values(dataset, arch, rows, ratios),
        full_data=[] if smoke else _full_data(dataset, arch), smoke=smoke)


def leaderboard_tables(trials: pd.DataFrame) -> list[Leaderboard]:
    """One :class:`Leaderboard` per (dataset, arch) that has finished trials, sorted; a
    smoke run's rows (``smoke``) make boards of their own, never compared with the papers."""
    boards = []
    smoke = trials["smoke"].eq(True) if "smoke" in trials else False  # null: older parts
    for (dataset, arch, is_smoke), group in trials.assign(_smoke=smoke).groupby(
            ["dataset", "arch", "_smoke"], sort=True):
        board = _board(str(dataset), str(arch), group, smoke=bool(is_smoke))
        if board is not None:
            boards.append(board)
    return boards


def ratio_label(ratio: float) -> str:
    return f"{100 * ratio:g}%"


def selector_label(row: RowKey) -> str:
    return row.selector + (f" ({row.config})" if row.config else "")


def _ours(board: Leaderboard, row: RowKey, ratio: float) -> tuple[str, bool]:
    cell = board.cells.get((row, ratio))
    return ("–", False) if cell is None else (cell.text(), board.is_best(row, ratio))


def rank_mark(board: Leaderboard, row: RowKey, ratio: float, text: str, bold: str = "**{}**",
              underline: str = "<u>{}</u>") -> str:
    """``text`` bold if best in its column, underlined if second (as the papers mark)."""
    if board.is_best(row, ratio):
        return bold.format(text)
    if board.is_second(row, ratio):
        return underline.format(text)
    return text


def paper_text(board: Leaderboard, row: RowKey, ratio: float) -> str | None:
    """The published values of a cell, each with ours minus it."""
    values = (board.paper or {}).get((row, ratio))
    if not values:
        return None
    cell = board.cells.get((row, ratio))
    return "; ".join(v.text() + ("" if cell is None else f" Δ {cell.mean - v.mean:+.2f}")
                     for v in values)


def md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(board: Leaderboard, with_paper: bool) -> list[str]:
    lines = ["| selector | label mode | " + " | ".join(map(ratio_label, board.ratios)) + " |",
             "|---|---|" + "---:|" * len(board.ratios)]
    for row in board.rows:
        cells = []
        for ratio in board.ratios:
            text, _ = _ours(board, row, ratio)
            text = rank_mark(board, row, ratio, text) if (row, ratio) in board.cells else text
            paper = paper_text(board, row, ratio) if with_paper else None
            if with_paper:
                text = f"ours {text}" + (f" \\| paper {md_escape(paper)}" if paper else "")
            cells.append(text)
        lines.append(f"| {md_escape(selector_label(row))} | {md_escape(row.label_mode)} | "
                     + " | ".join(cells) + " |")
    return lines


def render_markdown(boards: list[Leaderboard]) -> str:
    """GitHub-flavoured tables; the best mean of each ratio column in **bold**."""
    out = ["# Leaderboard", ""]
    if not boards:
        return "\n".join(out + ["No finished trials (status ok or stopped, with a test "
                                "accuracy) to report.", ""])
    for b in boards:
        out += [f"## {b.name}", "", b.header(), ""]
        if b.full_data:
            out += ["Full-data accuracy in the papers: "
                    + ", ".join(v.text() for v in b.full_data), ""]
        out += ["Test accuracy (%), mean ± std over seeds (n = seeds); **bold** = best in "
                "its column, <u>underlined</u> = second.", ""]
        out += _md_table(b, with_paper=False) + [""]
        out += [f"### {b.name}: ours vs. the papers", ""]
        if b.smoke:
            out += [SMOKE_NOTE, ""]
            continue
        if b.paper is None:
            out += [f"No published numbers for {b.dataset}/{b.arch} in the paper tables.", ""]
            continue
        if not b.paper:
            out += ["The paper tables have no cell with the same selector, label mode and "
                    "ratio as these trials.", ""]
        out += _md_table(b, with_paper=True) + [""]
    return "\n".join(out)


def _rich_table(board: Leaderboard, with_paper: bool) -> Table:
    title = board.title + (": ours vs. the papers" if with_paper else "")
    # cells fold onto a second line rather than lose digits to an ellipsis
    table = Table(title=title, caption=board.header(), title_justify="left")
    table.add_column("selector", overflow="fold")
    table.add_column("label mode", overflow="fold")
    for ratio in board.ratios:
        table.add_column(ratio_label(ratio), justify="right", overflow="fold")
    for row in board.rows:
        cells = []
        for ratio in board.ratios:
            text, best = _ours(board, row, ratio)
            cell = Text(text, style="bold green" if best else "")
            paper = paper_text(board, row, ratio) if with_paper else None
            if paper:
                cell.append(f" | paper {paper}", style="dim")
            cells.append(cell)
        table.add_row(Text(selector_label(row)), Text(row.label_mode), *cells)
    return table


def render_rich(boards: list[Leaderboard], console: Console) -> None:
    """Print each board (best of each column in bold green), then its paper comparison."""
    if not boards:
        console.print("No finished trials to report.")
    for board in boards:
        console.print(_rich_table(board, with_paper=False))
        if board.paper:
            console.print(_rich_table(board, with_paper=True))
        elif board.smoke:
            console.print(SMOKE_NOTE, markup=False)
        elif board.paper is None:
            console.print(f"No published numbers for {board.dataset}/{board.arch} "
                          "in the paper tables.", markup=False)
