"""Report figures (matplotlib, Agg): PNG bytes by name, written as files and embedded in HTML.

- ``accuracy_vs_ratio`` per (dataset, arch): each selector's mean test accuracy with a std
  error bar, hard labels dashed, soft solid (smoothing dotted, kd dash-dot), the teacher
  as a line;
- ``tau_lambda``: mean accuracy over the τ × λ grid of soft/kd trials, when a sweep varies
  both;
- ``beta_curves``: ELFS's β searches — held-out pseudo-label accuracy and the matched test
  accuracy against β, β* marked;
- ``difficulty``: a coreset's difficulty histogram against the full data's (needs the
  artifact store, ``--cache``);
- ``student_vs_teacher``: student accuracy as a share of the teacher's, per label mode;
- ``trial_time``: training seconds per trial by selector.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pandas as pd

from coretune.reports.leaderboard import Leaderboard

LINESTYLE = {"hard": "--", "soft": "-", "smooth": ":", "kd": "-."}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    _plt().close(fig)
    return buf.getvalue()


def _legend_outside(ax, ncol: int = 1) -> None:
    """The legend to the right of the axes, where it hides no curve."""
    ax.legend(fontsize=6, ncol=ncol, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)


def _ratio_axis(ax, percents: list[float]) -> None:
    """A log axis of selection ratios, ticked at the ratios themselves."""
    ax.set_xscale("log")
    ax.set_xticks(percents, [f"{p:g}" for p in percents])
    ax.minorticks_off()
    ax.set_xlabel("selection ratio (%)")


def accuracy_vs_ratio(board: Leaderboard) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.5, 4.6))
    selectors = sorted({(r.selector, r.config) for r in board.rows})
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, max(1, len(selectors))))
    color = {s: colors[i] for i, s in enumerate(selectors)}
    for row in board.rows:
        pts = [(r, board.cells[row, r]) for r in board.ratios if (row, r) in board.cells]
        if not pts:
            continue
        x = [100 * r for r, _ in pts]
        ax.errorbar(x, [c.mean for _, c in pts], yerr=[c.std or 0.0 for _, c in pts],
                    linestyle=LINESTYLE.get(row.label_mode, "-"), marker="o", markersize=3,
                    capsize=2, color="black" if row.selector == "random" and not row.config
                    else color[row.selector, row.config],
                    linewidth=2.0 if row.selector == "random" else 1.2,
                    label=f"{row.selector}{' (' + row.config + ')' if row.config else ''}"
                          f" · {row.label_mode}")
    if board.teacher_test_acc is not None:
        ax.axhline(board.teacher_test_acc, color="grey", linewidth=0.8, linestyle=":",
                   label="teacher")
    _ratio_axis(ax, [100 * r for r in board.ratios])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{board.dataset} / {board.arch}: hard dashed, soft solid, Random black")
    _legend_outside(ax, ncol=1 if len(board.rows) <= 16 else 2)
    return _png(fig)


def tau_lambda(trials: pd.DataFrame) -> bytes | None:
    soft = trials[trials["label_mode"].isin(["soft", "kd"]) & trials["test_acc"].notna()]
    if soft["tau"].nunique() < 2 or soft["lam"].nunique() < 2:
        return None
    grid = soft.pivot_table(index="tau", columns="lam", values="test_acc", aggfunc="mean") * 100
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    im = ax.imshow(grid.to_numpy(), cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isfinite(grid.iat[i, j]):
                ax.text(j, i, f"{grid.iat[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="white")
    ax.set_xlabel("λ")
    ax.set_ylabel("τ")
    ax.set_title("test accuracy (%) over τ × λ")
    fig.colorbar(im, ax=ax)
    return _png(fig)


def beta_curves(beta: pd.DataFrame) -> bytes | None:
    if beta.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for (dataset, ratio), grp in beta.sort_values("beta").groupby(["dataset", "ratio"]):
        line, = ax.plot(grp["beta"], 100 * grp["heldout_acc"], marker="o",
                        label=f"{dataset} {100 * ratio:g}%: pseudo-label val")
        ax.plot(grp["beta"], 100 * grp["test_matched_acc"], marker="x", linestyle="--",
                color=line.get_color(), label=f"{dataset} {100 * ratio:g}%: test (matched)")
        chosen = grp[grp["chosen"]]
        ax.scatter(chosen["beta"], 100 * chosen["heldout_acc"], s=120, facecolors="none",
                   edgecolors=line.get_color())
        stopped = grp[grp["status"] == "stopped"]
        ax.scatter(stopped["beta"], 100 * stopped["heldout_acc"], marker="v", color="red")
    ax.set_xlabel("β (hard-pruned share)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("ELFS β search (circle: β*, red: stopped by ASHA)")
    _legend_outside(ax)
    return _png(fig)


def difficulty(full: np.ndarray, coreset: np.ndarray, score: str, label: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.histogram_bin_edges(full, bins=40)
    ax.hist(full, bins=bins, density=True, alpha=0.5, label=f"full data (n={full.size})")
    ax.hist(coreset, bins=bins, density=True, alpha=0.6, label=f"{label} (n={coreset.size})")
    ax.set_xlabel(score)
    ax.set_ylabel("density")
    ax.set_title(f"difficulty of a coreset vs the full data ({score})")
    ax.legend(fontsize=7)
    return _png(fig)


def student_vs_teacher(trials: pd.DataFrame) -> bytes | None:
    t = trials[trials["teacher_test_acc"].notna() & trials["test_acc"].notna()]
    if t.empty:
        return None
    t = t.assign(share=t["test_acc"] / t["teacher_test_acc"])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for mode, grp in t.groupby("label_mode"):
        m = grp.groupby("ratio")["share"].agg(["mean", "std"])
        ax.errorbar(100 * m.index, 100 * m["mean"], yerr=100 * m["std"].fillna(0), marker="o",
                    linestyle=LINESTYLE.get(str(mode), "-"), capsize=2, label=str(mode))
    ax.axhline(100, color="black", linewidth=0.8)
    _ratio_axis(ax, sorted(100 * t["ratio"].unique()))
    ax.set_ylabel("student / teacher accuracy (%)")
    ax.set_title("students against their teacher")
    ax.legend(fontsize=7)
    return _png(fig)


def trial_time(trials: pd.DataFrame) -> bytes | None:
    t = trials[trials["train_seconds"].notna()]
    if t.empty:
        return None
    groups = sorted(t["selector"].unique())
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(groups) + 2), 3.5))
    ax.boxplot([t.loc[t["selector"] == g, "train_seconds"] for g in groups])
    ax.set_xticks(range(1, len(groups) + 1), groups, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("train seconds per student")
    ax.set_title(f"trial time ({len(t)} students, {t['train_seconds'].sum():.0f} s in all)")
    return _png(fig)


def all_figures(boards: list[Leaderboard], trials: pd.DataFrame, beta: pd.DataFrame,
                extra: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
    """Every figure the data supports, by file stem."""
    figs: dict[str, bytes] = {}
    for b in boards:
        figs[f"accuracy_vs_ratio_{b.dataset}_{b.arch}"] = accuracy_vs_ratio(b)
    for name, fn, arg in (("tau_lambda", tau_lambda, trials), ("beta_curves", beta_curves, beta),
                          ("student_vs_teacher", student_vs_teacher, trials),
                          ("trial_time", trial_time, trials)):
        png = fn(arg)
        if png is not None:
            figs[name] = png
    figs.update(extra or {})
    return figs
