"""Coverage-centric coreset selection (Zheng et al., ICLR 2023, Algorithm 1).

Hard-prune the β hardest samples, split the rest into equal-width strata of difficulty,
then spread the budget over strata starting from the smallest, so that easy, medium and
hard regions all stay covered at high pruning rates.
"""

from __future__ import annotations

import numpy as np

from coretune.selectors.base import (
    Selection,
    SelectionContext,
    SelectorArgumentError,
    register_selector,
)


def ccs_stratum_quotas(stratum_sizes: np.ndarray, budget: int) -> np.ndarray:
    """Per-stratum counts of Algorithm 1: smallest stratum first, m_B = min(|B|, ⌊m/|𝔅|⌋).

    Always sums to ``budget`` when ``budget <= sum(sizes)``: a stratum that cannot fill its
    share passes the rest to the larger strata that follow.
    """
    sizes = np.asarray(stratum_sizes, dtype=np.int64)
    if budget > sizes.sum():
        raise ValueError(f"budget {budget} exceeds the {int(sizes.sum())} samples in the strata")
    quotas = np.zeros_like(sizes)
    remaining = budget
    order = np.argsort(sizes, kind="stable")
    for pos, s in enumerate(order):  # loop over strata (≤ a few hundred), not samples
        quotas[s] = min(sizes[s], remaining // (len(order) - pos))
        remaining -= quotas[s]
    assert remaining == 0, "CCS allocation must use the whole budget"
    return quotas


def equal_width_strata(values: np.ndarray, strata: int) -> np.ndarray:
    """Stratum id of each value: ``strata`` equal-width bins over [min, max], last bin closed."""
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        return np.zeros(values.size, dtype=np.int64)
    ids = np.floor((values - lo) / (hi - lo) * strata).astype(np.int64)
    return np.minimum(ids, strata - 1)


@register_selector("ccs", needs={"scores"},
                   paper="Zheng et al., Coverage-centric Coreset Selection for High Pruning "
                         "Rates, ICLR 2023")
def ccs(ctx: SelectionContext, budget: int, score: str = "aum", beta: float = 0.0,
        strata: int = 50) -> Selection:
    """CCS on difficulty ``score``: prune the ⌊βN⌋ hardest, then stratified sampling."""
    if not 0.0 <= beta < 1.0:
        raise SelectorArgumentError(f"ccs: beta must be in [0, 1), got {beta}")
    if int(strata) < 1:
        raise SelectorArgumentError(f"ccs: strata must be >= 1, got {strata}")
    rng = ctx.rng()
    difficulty = ctx.difficulty(score)
    n = difficulty.size
    n_pruned = min(int(np.floor(beta * n)), n - budget)
    tiebreak = rng.random(n)
    kept = np.lexsort((tiebreak, difficulty))[: n - n_pruned]  # drop the hardest n_pruned
    ids = equal_width_strata(difficulty[kept], int(strata))
    quotas = ccs_stratum_quotas(np.bincount(ids, minlength=int(strata)), budget)
    # uniform sampling within strata: random keys, rank within each stratum, keep rank < quota
    order = np.lexsort((rng.random(kept.size), ids))
    starts = np.searchsorted(ids[order], np.arange(int(strata)))
    rank = np.arange(kept.size) - starts[ids[order]]
    return Selection(kept[order[rank < quotas[ids[order]]]])
