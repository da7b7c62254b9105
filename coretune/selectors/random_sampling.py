"""Random selection: uniform without replacement, optionally class-balanced.

The soft-label paper's strongest baseline: random coresets with teacher soft labels match
or beat the elaborate selectors at small ratios.
"""

from __future__ import annotations

import numpy as np

from coretune.selectors.base import Selection, SelectionContext, register_selector


def balanced_quotas(class_sizes: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Per-class counts as equal as possible, water-filled around classes that run out."""
    sizes = np.asarray(class_sizes, dtype=np.int64)
    quotas = np.zeros_like(sizes)
    remaining = budget
    open_ = sizes > 0
    while remaining > 0 and open_.any():
        k = int(open_.sum())
        share = np.zeros_like(sizes)
        share[open_] = remaining // k
        extra = rng.choice(np.flatnonzero(open_), remaining % k, replace=False)
        share[extra] += 1
        take = np.minimum(share, sizes - quotas)
        quotas += take
        remaining -= int(take.sum())
        open_ = quotas < sizes
    return quotas


@register_selector("random", needs=lambda a: {"labels"} if a.get("class_balanced") else set(),
                   paper="uniform random sampling (baseline of every coreset paper)")
def random_selection(ctx: SelectionContext, budget: int, class_balanced: bool = False
                     ) -> Selection:
    """Uniform random subset of size ``budget``; per-class quotas if ``class_balanced``."""
    rng = ctx.rng()
    if not class_balanced:
        return Selection(rng.choice(ctx.num_samples, budget, replace=False))
    labels = ctx.labels
    classes, inverse = np.unique(labels, return_inverse=True)
    quotas = balanced_quotas(np.bincount(inverse, minlength=classes.size), budget, rng)
    # shuffle once, then keep the first quota[c] samples of each class (vectorised)
    order = rng.permutation(ctx.num_samples)
    cls = inverse[order]
    by_class = np.argsort(cls, kind="stable")
    starts = np.searchsorted(cls[by_class], np.arange(classes.size))
    rank = np.arange(ctx.num_samples) - starts[cls[by_class]]
    keep = rank < quotas[cls[by_class]]
    return Selection(order[by_class[keep]])
