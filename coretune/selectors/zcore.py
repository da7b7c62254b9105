"""ZCore: zero-shot coverage and redundancy scores in embedding space (label-free).

"Zero-Shot Coreset Selection: Efficient Pruning for Unlabeled Data" (Griffin et al.,
2024; code voxel51/zcore, ``sample_score``). No label and no training: repeat
``n_samples`` times —

1. draw a random ``sample_dim``-dimensional subspace of the embeddings and a random point
   in it, each coordinate triangular between the embeddings' minimum, median and maximum;
2. **coverage:** the embedding nearest to the point (L1 in the subspace) gains 1;
3. **redundancy:** its ``redund_nn`` nearest other embeddings (L1 in the subspace) lose
   ``d⁻ᵉ / Σ d⁻ᵉ`` (``e = redund_exp``) — or, if the nearest is an exact duplicate
   (``d = 0``), that duplicate alone loses 1.

Scores are min–max normalised; the highest are kept. The published code scans all N
embeddings per draw (O(n_samples·N·log N)); here draws share a subspace in batches of
``batch`` with one k-d tree per batch (scipy), so the cost is
O((n_samples / batch)·N log N + n_samples·redund_nn·log N) and memory O(N + batch·redund_nn).
Sharing a subspace within a batch is the only departure: each draw's point and covered
sample are still its own, and every subspace is uniformly random.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import numpy as np
from annotated_types import Ge

from coretune.selectors.base import Selection, SelectionContext, register_selector
from coretune.selectors.samplers import rank_by_difficulty


def zcore_draws(x: np.ndarray, rng: np.random.Generator, n_samples: int, sample_dim: int,
                batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(subspace dims, points[size, dim]) per batch: the random part of ZCore."""
    n, d = x.shape
    lo, mid, hi = x.min(axis=0), np.median(x, axis=0), x.max(axis=0)
    dim = min(sample_dim, d)
    for start in range(0, n_samples, batch):
        dims = np.sort(rng.choice(d, dim, replace=False))
        size = min(batch, n_samples - start)
        right = np.where(hi[dims] <= lo[dims], lo[dims] + 1e-12, hi[dims])
        mode = np.clip(mid[dims], lo[dims], right)
        yield dims, rng.triangular(lo[dims], mode, right, size=(size, dim))


def redundancy_penalty(dist: np.ndarray, exponent: float) -> np.ndarray:
    """Row-normalised ``d⁻ᵉ`` (distances > 0), in log space: no overflow for tiny d."""
    logw = -exponent * np.log(dist)
    logw -= logw.max(axis=1, keepdims=True)
    w = np.exp(logw)
    return w / w.sum(axis=1, keepdims=True)


def zcore_scores(embeddings: np.ndarray, rng: np.random.Generator, n_samples: int,
                 sample_dim: int = 2, redund_nn: int = 1000, redund_exp: float = 4.0,
                 batch: int = 1000) -> np.ndarray:
    """Coverage minus redundancy of every embedding, min–max normalised (higher = keep)."""
    scores = zcore_raw_scores(embeddings, rng, n_samples, sample_dim, redund_nn, redund_exp,
                              batch)
    span = scores.max() - scores.min()
    return (scores - scores.min()) / span if span > 0 else np.zeros_like(scores)


def zcore_raw_scores(embeddings: np.ndarray, rng: np.random.Generator, n_samples: int,
                     sample_dim: int = 2, redund_nn: int = 1000, redund_exp: float = 4.0,
                     batch: int = 1000) -> np.ndarray:
    """Coverage minus redundancy, before normalisation. Equidistant nearest embeddings
    (exact ties) are broken by the k-d tree, not by the lowest index."""
    from scipy.spatial import cKDTree

    x = np.asarray(embeddings, dtype=np.float64)
    n = x.shape[0]
    nn = min(redund_nn, n - 1)
    scores = np.zeros(n)
    for dims, points in zcore_draws(x, rng, n_samples, sample_dim, batch):
        sub = np.ascontiguousarray(x[:, dims])
        tree = cKDTree(sub, balanced_tree=False, compact_nodes=False)
        _, hit = tree.query(points, k=1, p=1, workers=-1)
        scores += np.bincount(hit, minlength=n)
        if not nn:
            continue
        dist, nbrs = tree.query(sub[hit], k=nn + 1, p=1, workers=-1)
        # the covered sample itself is first (or an exact duplicate of it, at distance 0):
        # drop one column at distance 0 and keep the nn others, nearest first
        self_col = np.argmax(nbrs == hit[:, None], axis=1)
        keep = np.ones_like(nbrs, dtype=bool)
        keep[np.arange(hit.size), self_col] = False
        dist = dist[keep].reshape(hit.size, nn)
        nbrs = nbrs[keep].reshape(hit.size, nn)
        dup = dist[:, 0] == 0.0
        scores -= np.bincount(nbrs[dup, 0], minlength=n)
        rest = ~dup
        if rest.any():
            w = redundancy_penalty(dist[rest], redund_exp)
            scores -= np.bincount(nbrs[rest].ravel(), weights=w.ravel(), minlength=n)
    return scores


@register_selector("zcore", needs={"embeddings"}, label_free=True, version=2,
                   uses=("encoder",),
                   paper="Griffin et al., Zero-Shot Coreset Selection: Efficient Pruning for "
                         "Unlabeled Data, 2024 (voxel51/zcore)")
def zcore(ctx: SelectionContext, budget: int, n_samples: Annotated[int, Ge(1)] | None = None,
          sample_dim: Annotated[int, Ge(1)] = 2, redund_nn: Annotated[int, Ge(0)] = 1000,
          redund_exp: Annotated[float, Ge(0.0)] = 4.0) -> Selection:
    """Keep the highest coverage-minus-redundancy scores (default: N draws)."""
    rng = ctx.rng()
    scores = zcore_scores(ctx.embeddings, rng, n_samples or ctx.num_samples,
                          sample_dim, redund_nn, redund_exp)
    return Selection(rank_by_difficulty(scores, budget, "hardest", rng))
