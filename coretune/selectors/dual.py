"""DUAL (Cho, Shin, Kang & Yun, ICML 2025): difficulty × uncertainty from early training.

"Lightweight Dataset Pruning without Full Training via Example Difficulty and Prediction
Uncertainty", Sec. 3: with ``p_t(x)`` the probability of the true label at epoch ``t``,
over sliding windows of ``J`` epochs take the window mean ``μ̄`` and standard deviation
``σ``; the DUAL score averages ``(1 − μ̄)·σ`` over the windows up to epoch ``T``:

    DUAL(x) = 1/(T − J + 1) · Σ_{k=J}^{T} (1 − μ̄_k(x)) · σ_k(x),

high for examples that are both hard and uncertain; the lowest are pruned. ``T`` may be a
fraction of full training (the paper's point: scores without full training). Computed
from the proxy run's per-epoch outputs with running sums: O(R·T·N) time, O(N) extra memory.
Not implemented here: the paper's Beta-distribution sampling for very high pruning rates.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from annotated_types import Ge

from coretune.selectors.base import Selection, SelectionContext, register_selector
from coretune.selectors.proxies import TrainingOutputs
from coretune.selectors.samplers import Keep, rank_by_difficulty


def forward_fill(p: np.ndarray) -> np.ndarray:
    """Fill NaN entries along the epoch axis (-2) with the last seen value (else 0)."""
    p = np.array(p, dtype=np.float64)
    missing = np.isnan(p)
    if missing.any():
        e = p.shape[-2]
        last = np.where(~missing, np.arange(e)[:, None], 0)
        last = np.maximum.accumulate(last, axis=-2)
        p = np.take_along_axis(np.nan_to_num(p, nan=0.0), last, axis=-2)
    return p


def dual_scores(p_true: np.ndarray, window: int, epochs: int | None = None) -> np.ndarray:
    """DUAL score of each sample from ``p_true[R, E, N]`` (averaged over the R runs)."""
    p = forward_fill(p_true if epochs is None else p_true[:, :epochs])
    e = p.shape[1]
    j = min(window, e)
    zero = np.zeros_like(p[:, :1])
    s1 = np.concatenate([zero, np.cumsum(p, axis=1)], axis=1)
    s2 = np.concatenate([zero, np.cumsum(p * p, axis=1)], axis=1)
    mean = (s1[:, j:] - s1[:, :-j]) / j  # [R, E − J + 1, N]
    var = np.maximum((s2[:, j:] - s2[:, :-j]) / j - mean * mean, 0.0)
    return ((1.0 - mean) * np.sqrt(var)).mean(axis=1).mean(axis=0)


@register_selector("dual", needs={"outputs"},
                   paper="Cho, Shin, Kang & Yun, Lightweight Dataset Pruning without Full "
                         "Training via Example Difficulty and Prediction Uncertainty, ICML 2025")
def dual(ctx: SelectionContext, budget: int, window: Annotated[int, Ge(2)] = 10,
         epochs: Annotated[int, Ge(2)] | None = None, keep: Keep = "hardest") -> Selection:
    """Keep the highest DUAL scores (uncertain and hard early in training)."""
    out: TrainingOutputs = ctx.artifact("outputs")
    return Selection(rank_by_difficulty(dual_scores(out.p_true, window, epochs), budget, keep,
                                        ctx.rng()))
