"""Random selection: uniform without replacement, optionally class-balanced.

The soft-label paper's strongest baseline: random coresets with teacher soft labels match
or beat the elaborate selectors at small ratios. Without ``class_balanced`` the selector
needs nothing (not even labels); with it (handled for every selector by ``select``), it
needs labels, and :func:`balanced_quotas` splits the budget over the classes.
"""

from __future__ import annotations

import numpy as np

from coretune.selectors.base import Selection, SelectionContext, register_selector


def balanced_quotas(class_sizes: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Per-class counts as equal as possible (max-min fair water-filling).

    With all classes large enough every class gets ⌊budget/K⌋ and the remainder goes to
    randomly chosen classes. A class smaller than its share is taken whole and its leftover
    is spread over the larger classes, so the counts always sum to ``budget`` and the
    unsaturated classes differ by at most one.
    """
    sizes = np.asarray(class_sizes, dtype=np.int64)
    if not 0 <= budget <= sizes.sum():
        raise ValueError(f"budget {budget} not in [0, {int(sizes.sum())}]")
    quotas = np.zeros_like(sizes)
    remaining = int(budget)
    order = np.argsort(sizes, kind="stable")
    for pos, c in enumerate(order):  # loop over classes, smallest first
        k = order.size - pos
        level = remaining // k
        if sizes[c] > level:  # this class and all larger ones can take level (+1)
            rest = order[pos:]
            quotas[rest] = level
            quotas[rng.choice(rest, remaining - level * k, replace=False)] += 1
            return quotas
        quotas[c] = sizes[c]
        remaining -= int(sizes[c])
    return quotas  # budget == total: every class taken whole


def take_per_group(groups: np.ndarray, quotas: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Uniformly sample ``quotas[g]`` positions of each group ``g`` (``groups`` in [0, G))."""
    order = np.lexsort((rng.random(groups.size), groups))  # by group, random within
    starts = np.searchsorted(groups[order], np.arange(quotas.size))
    rank = np.arange(groups.size) - starts[groups[order]]
    return order[rank < quotas[groups[order]]]


@register_selector("random", paper="uniform random sampling (baseline of every coreset paper)")
def random_selection(ctx: SelectionContext, budget: int) -> Selection:
    """Uniform random subset of size ``budget`` (per-class quotas with ``class_balanced``)."""
    return Selection(ctx.rng().choice(ctx.num_samples, budget, replace=False))
