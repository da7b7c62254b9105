"""ZCore-style zero-shot coverage and redundancy scores in embedding space: label-free.

After "Zero-Shot Coreset Selection" (Griffin et al., 2024; code voxel51/zcore), as
described there and implemented here from that description (no ground truth, no
training): repeat ``n_samples`` times — draw a random ``sample_dim``-dimensional subspace
of the embeddings and a random point in it (each coordinate triangular between the
embeddings' minimum, median and maximum); the nearest embedding gains one coverage point,
and its ``redund_nn`` nearest neighbours in that subspace each lose ``1/rank^redund_exp``
(redundancy). The highest scores are kept. Draws share a subspace in batches of
``batch`` (one k-d tree per batch, scipy), so the cost is
O((n_samples / batch)·N log N + n_samples·redund_nn).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from annotated_types import Ge

from coretune.selectors.base import Selection, SelectionContext, register_selector
from coretune.selectors.scores import rank_by_difficulty


def zcore_scores(embeddings: np.ndarray, rng: np.random.Generator, n_samples: int,
                 sample_dim: int = 2, redund_nn: int = 1000, redund_exp: float = 4.0,
                 batch: int = 1000) -> np.ndarray:
    """Coverage minus redundancy of every embedding (higher = keep)."""
    from scipy.spatial import cKDTree

    x = np.asarray(embeddings, dtype=np.float64)
    n, d = x.shape
    lo, mid, hi = x.min(axis=0), np.median(x, axis=0), x.max(axis=0)
    dim = min(sample_dim, d)
    nn = min(redund_nn, n - 1)
    decay = 1.0 / np.arange(1, nn + 1, dtype=np.float64) ** redund_exp
    scores = np.zeros(n)
    for start in range(0, n_samples, batch):
        dims = rng.choice(d, dim, replace=False)
        size = min(batch, n_samples - start)
        flat = hi[dims] <= lo[dims]
        left, right = lo[dims], np.where(flat, lo[dims] + 1e-12, hi[dims])
        mode = np.clip(mid[dims], left, right)
        points = rng.triangular(left, mode, right, size=(size, dim))
        tree = cKDTree(x[:, dims])
        _, hit = tree.query(points, k=1)
        scores += np.bincount(hit, minlength=n)
        if nn:
            _, nbrs = tree.query(x[hit][:, dims], k=nn + 1)
            nbrs = nbrs[:, 1:]  # the hit itself first
            scores -= np.bincount(nbrs.ravel(), weights=np.tile(decay, size), minlength=n)
    return scores


@register_selector("zcore", needs={"embeddings"}, label_free=True,
                   paper="Griffin et al., Zero-Shot Coreset Selection: Efficient Pruning for "
                         "Unlabeled Data, 2024 (voxel51/zcore)")
def zcore(ctx: SelectionContext, budget: int, n_samples: Annotated[int, Ge(1)] | None = None,
          sample_dim: Annotated[int, Ge(1)] = 2, redund_nn: Annotated[int, Ge(0)] = 1000,
          redund_exp: Annotated[float, Ge(0.0)] = 4.0, encoder: str = "pixels",
          encoder_args: dict | None = None, encoder_weights: str | None = None) -> Selection:
    """Keep the highest coverage-minus-redundancy scores (default: N draws)."""
    rng = ctx.rng()
    scores = zcore_scores(ctx.embeddings, rng, n_samples or ctx.num_samples,
                          sample_dim, redund_nn, redund_exp)
    return Selection(rank_by_difficulty(scores, budget, "hardest", rng))
