"""Leaderboards in every format: Markdown (with gains, claims, provenance), LaTeX, CSV.

The Markdown report is, per (dataset, arch): the leaderboard (best **bold**, second
<u>underlined</u>), the label-controlled gain Δ to Random under the same labels and Δ to
Random + soft labels (``*``: Welch's t-test p < 0.05, seeds shown), ours against the
papers where a published cell matches, and whether the papers' claims hold on this run.
LaTeX is a booktabs ``tabular`` per board in the same marks; CSV is one tidy row per cell.
"""

from __future__ import annotations

import csv
import io

from coretune.reports.claims import soft_label_claims
from coretune.reports.leaderboard import (
    Leaderboard,
    RowKey,
    md_escape,
    paper_text,
    rank_mark,
    ratio_label,
    render_markdown,
    selector_label,
)
from coretune.reports.provenance import Provenance
from coretune.reports.stats import ALPHA, Gain, gains


def _gain_cell(g: Gain | None) -> str:
    if g is None:
        return "–"
    seeds = f"n={g.n}/{g.n_ref}"
    p = "" if g.p is None else f", p={g.p:.3f}"
    return f"{g.text()} ({seeds}{p})"


def _gain_table(board: Leaderboard, table: dict[tuple[RowKey, float], Gain],
                modes: tuple[str, ...] | None = None) -> list[str]:
    lines = ["| selector | label mode | " + " | ".join(map(ratio_label, board.ratios)) + " |",
             "|---|---|" + "---:|" * len(board.ratios)]
    for row in board.rows:
        if modes is not None and row.label_mode not in modes:
            continue
        if not any((row, r) in table for r in board.ratios):
            continue
        cells = [_gain_cell(table.get((row, r))) for r in board.ratios]
        lines.append(f"| {md_escape(selector_label(row))} | {row.label_mode} | "
                     + " | ".join(cells) + " |")
    return lines


def board_sections(board: Leaderboard) -> list[str]:
    """The gains and claims sections of one board."""
    out = []
    same = gains(board)
    if same:
        out += [f"### {board.dataset} / {board.arch}: label-controlled gain", "",
                "Δ test accuracy (points) to Random trained with the same labels; `*` = "
                f"Welch's t-test p < {ALPHA} (n = seeds here / Random's).", ""]
        out += _gain_table(board, same) + [""]
    soft = gains(board, against="soft")
    if soft:
        out += [f"### {board.dataset} / {board.arch}: Δ to Random + soft labels", "",
                "Δ test accuracy (points) to Random with teacher soft labels — the "
                "soft-label paper's central comparison.", ""]
        out += _gain_table(board, soft) + [""]
    out += [f"### {board.dataset} / {board.arch}: the papers' claims on this run", ""]
    for claim in soft_label_claims(board):
        out.append(f"- {claim.text}: **{claim.verdict()}** ({claim.evidence})")
    return out + [""]


def render_report_markdown(boards: list[Leaderboard], provenance: Provenance | None = None
                           ) -> str:
    """The whole Markdown report: leaderboards, gains, claims, provenance."""
    body = render_markdown(boards)
    if not boards:
        return body
    parts = body.split("\n## ")
    out = [parts[0].rstrip("\n")]
    for board, part in zip(boards, parts[1:], strict=True):
        out.append("## " + part.rstrip("\n") + "\n\n" + "\n".join(board_sections(board)))
    text = "\n\n".join(out)
    if provenance is not None:
        text += "\n## Provenance\n\n" + "\n".join(provenance.markdown()) + "\n"
    return text


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                 ("#", r"\#"), ("{", r"\{"), ("}", r"\}"), ("±", r"$\pm$")):
        text = text.replace(a, b)
    return text


def render_latex(boards: list[Leaderboard]) -> str:
    """A booktabs ``tabular`` per board: mean±std, best \\textbf, second \\underline."""
    out = ["% coretune leaderboards: test accuracy (%), mean $\\pm$ std over seeds",
           "% requires \\usepackage{booktabs}"]
    for b in boards:
        cols = "ll" + "r" * len(b.ratios)
        out += [f"% {b.name}: {b.header()}", "\\begin{tabular}{" + cols + "}",
                "\\toprule",
                "Selector & Labels & " + " & ".join(_tex(ratio_label(r)) for r in b.ratios)
                + " \\\\", "\\midrule"]
        for row in b.rows:
            cells = []
            for r in b.ratios:
                c = b.cells.get((row, r))
                if c is None:
                    cells.append("--")
                    continue
                text = f"{c.mean:.2f}" + ("" if c.std is None else f"$\\pm${c.std:.2f}")
                cells.append(rank_mark(b, row, r, text, "\\textbf{{{}}}", "\\underline{{{}}}"))
            out.append(f"{_tex(selector_label(row))} & {_tex(row.label_mode)} & "
                       + " & ".join(cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(out)


CSV_COLUMNS = ["dataset", "arch", "selector", "config", "label_mode", "ratio", "mean", "std",
               "n", "rank", "delta_random", "p_random", "delta_random_soft", "p_random_soft",
               "paper", "smoke"]


def render_csv(boards: list[Leaderboard]) -> str:
    """One row per (board, selector, label mode, ratio) cell."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for b in boards:
        same, soft = gains(b), gains(b, against="soft")
        for row in b.rows:
            for r in b.ratios:
                c = b.cells.get((row, r))
                if c is None:
                    continue
                g, gs = same.get((row, r)), soft.get((row, r))
                rank = "best" if b.is_best(row, r) else "second" if b.is_second(row, r) else ""
                w.writerow([b.dataset, b.arch, row.selector, row.config, row.label_mode, r,
                            f"{c.mean:.4f}", "" if c.std is None else f"{c.std:.4f}", c.n,
                            rank, "" if g is None else f"{g.delta:.4f}",
                            "" if g is None or g.p is None else f"{g.p:.4g}",
                            "" if gs is None else f"{gs.delta:.4f}",
                            "" if gs is None or gs.p is None else f"{gs.p:.4g}",
                            paper_text(b, row, r) or "", b.smoke])
    return buf.getvalue()
