"""A plugin selector, in one file: distance to the class mean in the proxy features.

Sorscher et al. (NeurIPS 2022, "Beyond neural scaling laws", Sec. 5) rank examples by
their distance to their class prototype — the mean embedding of the class — and keep the
hard (far) ones when data are plentiful, the easy (near) ones when they are scarce. Here
the embedding is the proxy run's penultimate ``features`` and the prototype the class
mean; ``keep`` says which end, or ``spread`` for one sample from each of ``budget``
equal-width bands of the distance ranks (the whole range, stratified). Class-balanced by
default (each class gets its share of the budget and is ranked alone).

Cost: O(N·D) — one ``bincount``-style scatter for the means, one row norm — and an
O(N log N) sort; no Python loop over samples or classes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from coretune.selectors import Selection, SelectionContext, register_selector


def distance_to_class_mean(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """‖f_i − mean{f_j : y_j = y_i}‖₂ for every sample, all classes at once."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    classes, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.ravel()
    sums = np.zeros((classes.size, x.shape[1]))
    np.add.at(sums, inverse, x)
    means = sums / np.bincount(inverse, minlength=classes.size)[:, None]
    return np.linalg.norm(x - means[inverse], axis=1)


@register_selector("class_mean_distance", needs={"features", "labels"}, class_balanced=True,
                   paper="Sorscher et al., Beyond neural scaling laws: beating power law "
                         "scaling via data pruning, NeurIPS 2022 (supervised prototypes)")
def class_mean_distance(ctx: SelectionContext, budget: int,
                        keep: Literal["far", "near", "spread"] = "far") -> Selection:
    """The ``budget`` samples farthest from (``far``), nearest to (``near``) or spread over
    (``spread``) the distances to their class mean; ties broken by the seed."""
    dist = distance_to_class_mean(ctx.artifact("features"), ctx.labels)
    rng = ctx.rng()
    order = np.lexsort((rng.random(dist.size), dist))  # nearest first, seeded ties
    n = dist.size
    if keep == "far":
        return Selection(order[n - budget:])
    if keep == "near":
        return Selection(order[:budget])
    # one rank drawn uniformly inside each of `budget` equal bands [i·n/b, (i+1)·n/b)
    lo = np.arange(budget) * n // budget
    hi = (np.arange(budget) + 1) * n // budget
    return Selection(order[lo + (rng.random(budget) * (hi - lo)).astype(np.int64)])
