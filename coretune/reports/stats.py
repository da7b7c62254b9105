"""Label-controlled gains: each selector against Random under the same labels, with tests.

DD-Ranking's idea for distilled data (Li et al., 2025), applied to coresets: a selector's
gain over Random is only its own when both train with the same label source. For every
cell of a leaderboard: Δ to Random under the same label mode, and Δ to Random with soft
labels (the soft-label paper's central comparison), each with Welch's unequal-variance
t-test (scipy) over the seeds; significant at p < 0.05 when both sides have ≥ 2 seeds.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from coretune.reports.leaderboard import Cell, Leaderboard, RowKey

ALPHA = 0.05
RANDOM = "random"


@dataclass(frozen=True)
class Gain:
    delta: float  # percentage points
    p: float | None  # Welch's t-test; None with fewer than two seeds on a side
    n: int
    n_ref: int

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < ALPHA

    def text(self) -> str:
        mark = "*" if self.significant else ""
        return f"{self.delta:+.2f}{mark}"


def welch(a: tuple[float, ...], b: tuple[float, ...]) -> float | None:
    """Two-sided p-value of Welch's t-test, or None when a side has < 2 values (or both
    sides are constant and equal)."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return None
    with warnings.catch_warnings():  # near-identical seeds: scipy warns, the p is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def random_row(board: Leaderboard, label_mode: str) -> RowKey | None:
    """Plain Random under ``label_mode`` (its default configuration), if the board has it."""
    for config in ("", "default"):
        row = RowKey(RANDOM, label_mode, config)
        if row in board.rows:
            return row
    return None


def gain(cell: Cell, ref: Cell | None) -> Gain | None:
    if ref is None:
        return None
    return Gain(cell.mean - ref.mean, welch(cell.values, ref.values), cell.n, ref.n)


def gains(board: Leaderboard, against: str | None = None
          ) -> dict[tuple[RowKey, float], Gain]:
    """Δ of every cell to Random under the same label mode (``against=None``), or under
    the label mode ``against`` (e.g. ``soft``: Random + soft labels)."""
    out = {}
    for (row, ratio), cell in board.cells.items():
        ref_row = random_row(board, against or row.label_mode)
        if ref_row is None or ref_row == row:
            continue
        g = gain(cell, board.cells.get((ref_row, ratio)))
        if g is not None:
            out[row, ratio] = g
    return out
