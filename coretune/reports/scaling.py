"""Hard Truths' scaling analysis of a run: accuracy against compute per label regime, and
whether the paper's three claims hold on it.

Dey, Sahdev, Bhati, Mopuri, Babu, "Rethinking Dataset Distillation: Hard Truths about Soft
Labels", CVPR 2026 (arXiv 2604.18811): at equal compute (training images seen), subsets of
every size and quality *converge* under soft labels with online KD (SL+KD, coretune's
``kd``), still *differ* under fixed soft labels (SL, ``soft``) and *diverge* under hard
labels (HL, ``hard``). The rows of a compute-aligned sweep (budgets in ``images`` or
``full_epochs``, more than one compute level) are read as arms — a selector (with its
arguments) at an IPC or ratio, or the full-data arm (ratio 1, no IPC) — and compute in
full-data epochs. At the largest compute level of each (dataset, arch):

1. **SL+KD converges**: every subset arm is equivalent to the full-data arm within
   ``margin`` accuracy points — TOST (two one-sided Welch t-tests; Schuirmann 1987),
   p < 0.05 for each arm;
2. **SL differs**: its best and worst subset arms differ (Welch p < 0.05) and its spread
   (best − worst mean) exceeds SL+KD's;
3. **HL diverges**: its spread exceeds SL's and does not shrink from the smallest compute
   level to the largest.

Each claim is ``True``/``False`` with the numbers it rests on, or ``None`` when the run lacks
the cells. Cost: one pass over the rows, a t-test per arm.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coretune.reports.claims import Claim
from coretune.reports.stats import welch

REGIMES = {"hard": "HL", "soft": "SL", "kd": "SL+KD"}
FULL = "full data"
ALPHA = 0.05


def _compute(row: Mapping) -> float | None:
    """Full-data epochs of compute a row's budget asks for (None: not compute-aligned)."""
    budget = json.loads(row["budget"]) if isinstance(row["budget"], str) else row["budget"]
    if budget.get("unit") == "full_epochs":
        return float(budget["value"])
    if budget.get("unit") == "images" and row["n_selected"] and row["ratio"]:
        return float(budget["value"]) / round(row["n_selected"] / row["ratio"])
    return None


def _arm(row: Mapping) -> str:
    ipc = row.get("ipc")
    if (ipc is None or pd.isna(ipc)) and float(row["ratio"]) == 1.0:
        return FULL
    args = json.loads(row["selector_args"] or "{}")
    name = row["selector"] + (f"({', '.join(f'{k}={v}' for k, v in sorted(args.items()))})"
                              if args else "")
    size = f"IPC {int(ipc)}" if ipc is not None and not pd.isna(ipc) else \
        f"{100 * float(row['ratio']):g}%"
    return f"{name} {size}"


def scaling_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per ok student of a compute-aligned sweep with more than one compute level:
    dataset, arch, regime, arm, compute (full-data epochs), seed, accuracy (points)."""
    ok = trials[(trials["status"] == "ok") & trials["label_mode"].isin(list(REGIMES))]
    if ok.empty:
        return pd.DataFrame()
    rows = ok.to_dict("records")
    frame = pd.DataFrame({
        "dataset": [r["dataset"] for r in rows], "arch": [r["arch"] for r in rows],
        "regime": [r["label_mode"] for r in rows], "arm": [_arm(r) for r in rows],
        "compute": [_compute(r) for r in rows], "seed": [r["seed"] for r in rows],
        "acc": [100 * float(r["test_acc"]) for r in rows]})
    frame = frame[frame["compute"].notna()]
    levels = frame.groupby(["dataset", "arch"])["compute"].transform("nunique")
    return frame[levels > 1].reset_index(drop=True)


def _samples(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``a`` and ``b`` as float arrays, or None if either has fewer than two values."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return None if len(a) < 2 or len(b) < 2 else (a, b)


def _shifted_welch(a: np.ndarray, b: np.ndarray, shift: float, alternative: str) -> float:
    """p of the one-sided Welch test of ``a + shift`` against ``b``."""
    from scipy import stats

    return float(stats.ttest_ind(a + shift, b, equal_var=False,
                                 alternative=alternative).pvalue)


def tost(a: np.ndarray, b: np.ndarray, margin: float) -> float:
    """p of TOST equivalence of the means of ``a`` and ``b`` within ±``margin`` (Welch)."""
    if (pair := _samples(a, b)) is None:
        return float("nan")
    a, b = pair
    if a.std() == 0 and b.std() == 0:  # no spread: equivalent exactly when within margin
        return 0.0 if abs(a.mean() - b.mean()) < margin else 1.0
    return max(_shifted_welch(a, b, margin, "greater"), _shifted_welch(a, b, -margin, "less"))


def beyond_margin(a: np.ndarray, b: np.ndarray, margin: float) -> float:
    """p of the means of ``a`` and ``b`` differing by more than ``margin`` (one-sided Welch
    on the side of the observed gap): small when the data show a real gap wider than the
    margin, which TOST's failure alone does not (few seeds fail both)."""
    if (pair := _samples(a, b)) is None:
        return float("nan")
    a, b = pair
    if a.std() == 0 and b.std() == 0:
        return 0.0 if abs(a.mean() - b.mean()) > margin else 1.0
    if a.mean() >= b.mean():
        return _shifted_welch(a, b, -margin, "greater")
    return _shifted_welch(a, b, margin, "less")


@dataclass(frozen=True)
class Spread:
    """Best and worst subset arm (mean accuracy) of a regime at a compute level."""

    best: str
    best_acc: float
    worst: str
    worst_acc: float
    p: float  # Welch, best vs worst

    @property
    def width(self) -> float:
        return self.best_acc - self.worst_acc


def spread(frame: pd.DataFrame, regime: str, compute: float) -> Spread | None:
    cells = frame[(frame["regime"] == regime) & (frame["compute"] == compute)
                  & (frame["arm"] != FULL)]
    means = cells.groupby("arm")["acc"].mean()
    if len(means) < 2:
        return None
    best, worst = means.idxmax(), means.idxmin()
    values = lambda arm: cells[cells["arm"] == arm]["acc"].to_numpy()  # noqa: E731
    p = welch(tuple(values(best)), tuple(values(worst)))
    return Spread(best, float(means[best]), worst, float(means[worst]),
                  float("nan") if p is None else p)


def scaling_claims(frame: pd.DataFrame, margin: float = 2.0) -> list[Claim]:
    """The three claims on one (dataset, arch)'s rows (see the module docstring)."""
    top, bottom = frame["compute"].max(), frame["compute"].min()
    at = frame[frame["compute"] == top]
    seeds = sorted(frame["seed"].unique())
    where = f"at {top:g} full-data epochs, {len(seeds)} seeds"

    kd = at[at["regime"] == "kd"]
    full = kd[kd["arm"] == FULL]["acc"].to_numpy()
    if len(full) and kd["arm"].nunique() > 1:
        arms = kd[kd["arm"] != FULL].groupby("arm")
        ps = {arm: tost(g["acc"].to_numpy(), full, margin) for arm, g in arms}
        apart = {arm: beyond_margin(g["acc"].to_numpy(), full, margin) for arm, g in arms}
        worst = max(ps, key=lambda a: (np.nan_to_num(ps[a], nan=1.0), a))
        gap = kd.groupby("arm")["acc"].mean()
        far = max(ps, key=lambda a: abs(gap[a] - full.mean()))
        n_eq = sum(p < ALPHA for p in ps.values())
        differ = sorted(a for a, p in apart.items() if p < ALPHA)
        converge = Claim(
            f"SL+KD: every subset is equivalent to the full data within ±{margin:g} points",
            n_eq == len(ps),
            f"{where}: full data {full.mean():.2f}; {n_eq}/{len(ps)} arms equivalent "
            f"(TOST p < {ALPHA}), {len(differ)} shown farther than ±{margin:g} (one-sided "
            f"Welch p < {ALPHA}{': ' + ', '.join(differ) if differ else ''}), "
            f"{len(ps) - n_eq - len(differ)} undecided at this many seeds; least "
            f"equivalent: {worst} p = {ps[worst]:.3f}; farthest: {far} {gap[far]:.2f}")
    else:
        converge = Claim(f"SL+KD: every subset is equivalent to the full data within "
                         f"±{margin:g} points", None, "no kd rows with a full-data arm")
    s_kd, s_sl = spread(frame, "kd", top), spread(frame, "soft", top)
    if s_sl is None or s_kd is None:
        differ = Claim("SL: subsets still differ", None, "no soft (or kd) rows")
    else:
        differ = Claim(
            "SL: subsets still differ (best vs worst significant, wider than SL+KD)",
            s_sl.p < ALPHA and s_sl.width > s_kd.width,
            f"{where}: SL best {s_sl.best} {s_sl.best_acc:.2f} vs worst {s_sl.worst} "
            f"{s_sl.worst_acc:.2f} (Welch p = {s_sl.p:.3g}); spread SL {s_sl.width:.2f} vs "
            f"SL+KD {s_kd.width:.2f}")
    s_hl, s_hl_low = spread(frame, "hard", top), spread(frame, "hard", bottom)
    if s_hl is None or s_sl is None or s_hl_low is None:
        diverge = Claim("HL: subsets diverge", None, "no hard (or soft) rows")
    else:
        diverge = Claim(
            "HL: subsets diverge (spread wider than SL's, not shrinking with compute)",
            s_hl.width > s_sl.width and s_hl.width >= s_hl_low.width,
            f"{where}: spread HL {s_hl.width:.2f} (at {bottom:g}: {s_hl_low.width:.2f}) vs "
            f"SL {s_sl.width:.2f}; HL best {s_hl.best} {s_hl.best_acc:.2f}, worst "
            f"{s_hl.worst} {s_hl.worst_acc:.2f}")
    return [converge, differ, diverge]


def scaling_markdown(frame: pd.DataFrame, margin: float = 2.0) -> str:
    """Per (dataset, arch): the claims, then a table per regime of mean ± std accuracy
    of each arm at each compute level."""
    out = ["# Compute-aligned scaling (Hard Truths)", ""]
    for (dataset, arch), part in frame.groupby(["dataset", "arch"]):
        out += [f"## {dataset} / {arch}", ""]
        out += [f"- **{c.text}**: {c.verdict()} ({c.evidence})"
                for c in scaling_claims(part, margin)]
        levels = sorted(part["compute"].unique())
        for regime, name in REGIMES.items():
            rows = part[part["regime"] == regime]
            if rows.empty:
                continue
            out += ["", f"### {name} (`{regime}`)", "",
                    "| arm | " + " | ".join(f"{c:g} ep" for c in levels) + " |",
                    "|---|" + "---:|" * len(levels)]
            stats = rows.groupby(["arm", "compute"])["acc"].agg(["mean", "std", "count"])
            for arm in sorted(rows["arm"].unique(), key=lambda a: (a != FULL, a)):
                cells = []
                for c in levels:
                    if (arm, c) in stats.index:
                        m, s, n = stats.loc[(arm, c)]
                        cells.append(f"{m:.2f} ± {0 if np.isnan(s) else s:.2f} (n={int(n)})")
                    else:
                        cells.append("–")
                out.append(f"| {arm} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def accuracy_vs_compute(frame: pd.DataFrame) -> dict[str, bytes]:
    """Per (dataset, arch) one figure, a panel per regime: mean accuracy (± std over seeds)
    against compute (full-data epochs, log), a line per arm, the full data in black."""
    from coretune.reports.plots import _legend_outside, _plt, _png

    plt = _plt()
    figs = {}
    for (dataset, arch), part in frame.groupby(["dataset", "arch"]):
        regimes = [r for r in REGIMES if (part["regime"] == r).any()]
        fig, axes = plt.subplots(1, len(regimes), figsize=(4.2 * len(regimes) + 2.2, 3.4),
                                 sharey=True, squeeze=False)
        arms = sorted(part["arm"].unique(), key=lambda a: (a != FULL, a))
        colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(1, len(arms))))
        for ax, regime in zip(axes[0], regimes, strict=True):
            rows = part[part["regime"] == regime]
            for arm, colour in zip(arms, colours, strict=True):
                g = rows[rows["arm"] == arm].groupby("compute")["acc"].agg(["mean", "std"])
                if g.empty:
                    continue
                ax.errorbar(g.index, g["mean"], yerr=g["std"].fillna(0), capsize=2,
                            label=arm, color="black" if arm == FULL else colour,
                            linewidth=2.2 if arm == FULL else 1.0, marker="o", markersize=3)
            ax.set_xscale("log")
            ax.set_title(f"{REGIMES[regime]} ({regime})", fontsize=9)
            ax.set_xlabel("compute (full-data epochs)")
        axes[0][0].set_ylabel(f"{dataset} / {arch} test accuracy (%)")
        _legend_outside(axes[0][-1])
        figs[f"accuracy_vs_compute_{dataset}_{arch}".replace("/", "_")] = _png(fig)
    return figs


__all__ = ["accuracy_vs_compute", "beyond_margin", "scaling_claims", "scaling_frame",
           "scaling_markdown", "spread", "tost"]
