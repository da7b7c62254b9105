"""Geometric coresets in a feature space: Moderate, k-center greedy and herding.

The space is the proxy run's penultimate ``features`` (DeepCore's choice for these
methods). Each step of k-center and herding is one matrix–vector product over the pool,
O(n·D) time, O(n) memory beyond the features; Moderate is O(n·D).

- Moderate coreset (Xia et al., ICLR 2023, Sec. 3): distance of each sample to its
  class's median feature vector; keep the band of distance ranks around the median
  (their code: ranks in [0.5 − r/2, 0.5 + r/2]), not the easiest or hardest extremes.
- k-center greedy (Sener & Savarese, ICLR 2018, Alg. 1): from a seeded random start,
  repeatedly add the point farthest from the chosen centres (a 2-approximation of the
  minimax facility location).
- Herding (Welling, ICML 2009; Chen, Welling & Smola, UAI 2010): greedily add the point
  that keeps the mean of the chosen set closest to the mean of all,
  ``argmin_i ‖(t + 1)·μ − Σ_S x − x_i‖``.
"""

from __future__ import annotations

import numpy as np

from coretune.selectors.base import Selection, SelectionContext, register_selector


def _features(ctx: SelectionContext) -> np.ndarray:
    return np.ascontiguousarray(ctx.artifact("features"), dtype=np.float32)


def middle_band(values: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """The ``budget`` samples whose ranks of ``values`` are centred on the median rank
    (ties broken at random)."""
    order = np.lexsort((rng.random(values.size), values))
    start = (values.size - budget) // 2
    return order[start:start + budget]


def distance_to_class_median(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """‖f_i − median{f_j : y_j = y_i}‖₂, the per-dimension median of each class."""
    dist = np.empty(len(labels))
    for c in np.unique(labels):  # one pass per class, vectorised within it
        members = labels == c
        median = np.median(features[members], axis=0)
        dist[members] = np.linalg.norm(features[members] - median, axis=1)
    return dist


@register_selector("moderate", needs={"features", "labels"},
                   paper="Xia et al., Moderate Coreset: A Universal Method of Data Selection "
                         "for Real-world Data-efficient Deep Learning, ICLR 2023")
def moderate(ctx: SelectionContext, budget: int) -> Selection:
    """Keep the samples of moderate distance to their class median (the middle band)."""
    dist = distance_to_class_median(_features(ctx), ctx.labels)
    return Selection(middle_band(dist, budget, ctx.rng()))


def k_center_greedy(x: np.ndarray, budget: int, first: int) -> np.ndarray:
    """Farthest-first traversal from ``first``: ``budget`` centres (Sener & Savarese Alg. 1)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    sq = np.einsum("ij,ij->i", x, x)
    chosen = np.empty(budget, dtype=np.int64)
    chosen[0] = first
    mind = np.maximum(sq - 2.0 * (x @ x[first]) + sq[first], 0.0)
    mind[first] = -1.0
    for t in range(1, budget):  # one matrix-vector product per centre
        c = int(np.argmax(mind))
        chosen[t] = c
        np.minimum(mind, np.maximum(sq - 2.0 * (x @ x[c]) + sq[c], 0.0), out=mind)
        mind[c] = -1.0  # chosen centres stay at −1 (the minimum keeps them there)
    return chosen


@register_selector("kcenter", needs={"features"},
                   paper="Sener & Savarese, Active Learning for Convolutional Neural "
                         "Networks: A Core-Set Approach, ICLR 2018")
def kcenter(ctx: SelectionContext, budget: int) -> Selection:
    """k-center greedy in the proxy model's feature space, from a seeded random start."""
    x = _features(ctx)
    return Selection(k_center_greedy(x, budget, int(ctx.rng().integers(len(x)))))


def herding_order(x: np.ndarray, budget: int) -> np.ndarray:
    """Kernel herding with the linear kernel: keep the chosen mean closest to the full mean."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    mu = x.mean(axis=0, dtype=np.float64)
    total = np.zeros(x.shape[1])
    free = np.ones(len(x), dtype=bool)
    chosen = np.empty(budget, dtype=np.int64)
    for t in range(budget):  # argmin ‖r − x_i‖² = argmax 2·r·x_i − ‖x_i‖²
        r = (t + 1) * mu - total
        score = 2.0 * (x @ r.astype(np.float32)) - sq
        score[~free] = -np.inf
        j = int(np.argmax(score))
        chosen[t], free[j] = j, False
        total += x[j]
    return chosen


@register_selector("herding", needs={"features"},
                   paper="Welling, Herding Dynamical Weights to Learn, ICML 2009 (as in "
                         "DeepCore, Guo et al. 2022)")
def herding(ctx: SelectionContext, budget: int) -> Selection:
    """Herding in the proxy model's feature space (deterministic given the features)."""
    return Selection(herding_order(_features(ctx), budget))
