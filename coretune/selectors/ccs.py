"""Coverage-centric coreset selection (Zheng et al., ICLR 2023, Algorithm 1).

"Coverage-centric Coreset Selection for High Pruning Rates": hard-prune the ⌊βN⌋ hardest
samples, split the rest into ``strata`` equal-width difficulty strata, then spread the
budget over the strata starting from the smallest, so easy, medium and hard regions all
stay covered at high pruning rates.
"""

from __future__ import annotations

import numbers
from typing import Annotated

import numpy as np
from annotated_types import Ge, Interval

from coretune.selectors.base import (
    DynamicsScore,
    Selection,
    SelectionContext,
    SelectorArgumentError,
    register_selector,
)
from coretune.selectors.random_sampling import take_per_group
from coretune.selectors.samplers import sampler_difficulty, score_needs


def ccs_stratum_quotas(stratum_sizes: np.ndarray, budget: int) -> np.ndarray:
    """Per-stratum counts of Algorithm 1: smallest stratum first, m_B = min(|B|, ⌊m/|𝔅|⌋).

    Sums to ``budget`` whenever ``budget <= sum(sizes)``. Invariant: m ≤ Σ|B| over the strata
    left. Taking a whole stratum keeps it; otherwise m_B = ⌊m/r⌋ = q < |B| ≤ every remaining
    size, and with m = rq + s (s < r): m − q = (r−1)q + s ≤ (r−1)(q+1) ≤ Σ of the rest. The
    last stratum (r = 1) then takes m_B = m.
    """
    sizes = np.asarray(stratum_sizes, dtype=np.int64)
    if not 0 <= budget <= sizes.sum():
        raise ValueError(f"budget {budget} not in [0, {int(sizes.sum())}] (samples in strata)")
    quotas = np.zeros_like(sizes)
    remaining = int(budget)
    order = np.argsort(sizes, kind="stable")
    for pos, b in enumerate(order):  # loop over strata (a few hundred at most), not samples
        quotas[b] = min(int(sizes[b]), remaining // (order.size - pos))
        remaining -= int(quotas[b])
    assert remaining == 0, "CCS allocation must use the whole budget"
    return quotas


def equal_width_strata(values: np.ndarray, strata: int) -> np.ndarray:
    """Stratum id of each value: ``strata`` equal-width bins over [min, max], last bin closed.

    All values equal: a single stratum (id 0).
    """
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        return np.zeros(values.size, dtype=np.int64)
    ids = np.floor((values - lo) / (hi - lo) * strata).astype(np.int64)
    return np.clip(ids, 0, strata - 1)


@register_selector("ccs", needs=score_needs,
                   paper="Zheng et al., Coverage-centric Coreset Selection for High Pruning "
                         "Rates, ICLR 2023")
def ccs(ctx: SelectionContext, budget: int, score: DynamicsScore = "aum",
        score_file: str | None = None,
        beta: Annotated[float, Interval(ge=0.0, lt=1.0)] = 0.0,
        strata: Annotated[int, Ge(1)] = 50) -> Selection:
    """CCS on difficulty ``score`` (Algorithm 1): prune the ⌊βN⌋ hardest, then stratify.

    The hard cutoff never leaves fewer than ``budget`` samples (it is capped at N − budget);
    samples are drawn uniformly at random within each stratum. Time O(N log N).
    """
    if not isinstance(beta, numbers.Real) or not 0.0 <= beta < 1.0:
        raise SelectorArgumentError(f"ccs: beta must be in [0, 1), got {beta!r}")
    if isinstance(strata, bool) or not isinstance(strata, numbers.Integral) or strata < 1:
        raise SelectorArgumentError(f"ccs: strata must be an integer >= 1, got {strata!r}")
    return Selection(ccs_select(sampler_difficulty(ctx, score, score_file), budget, beta,
                                int(strata), ctx.rng()))


def ccs_select(difficulty: np.ndarray, budget: int, beta: float, strata: int,
               rng: np.random.Generator) -> np.ndarray:
    """CCS's Algorithm 1 on a difficulty array (higher = harder)."""
    n = difficulty.size
    n_pruned = min(int(np.floor(beta * n)), n - budget)
    kept = np.lexsort((rng.random(n), difficulty))[: n - n_pruned]  # drop the n_pruned hardest
    ids = equal_width_strata(difficulty[kept], strata)
    quotas = ccs_stratum_quotas(np.bincount(ids, minlength=strata), budget)
    chosen = kept[take_per_group(ids, quotas, rng)]
    assert chosen.size == budget
    return chosen
