"""Gradient-matching coresets on last-layer gradient embeddings: CRAIG and GradMatch.

Both run per class by default (``class_balanced``, as in the papers and DeepCore) on the
closed-form embeddings of :class:`~coretune.selectors.proxies.GradEmbedding`, and both
return per-sample weights; students train on them with a weighted loss.

- CRAIG (Mirzasoleiman, Bilmes & Leskovec, ICML 2020, Alg. 1 and Eq. 9): greedy facility
  location with ``s_ij = d_max − ‖g_i − g_j‖``; each medoid's weight is the number of
  samples it is the closest selected point to. O(n²) memory per class (dense), or a
  sparse k-NN kernel on a TensorSketch above ``dense_max``.
- GradMatch (Killamsetty et al., ICML 2021, Alg. 1 with OMP): orthogonal matching pursuit
  with non-negative weights that match the class's gradient sum, ridge ``λ``:
  ``min_{w ≥ 0} ‖Σ_{j∈S} w_j g_j − Σ_i g_i‖² + λ‖w‖²``. Everything runs on the Gram
  matrix (O(n²) per class); each step solves the non-negative least squares on the
  support by a warm-started active-set method in Gram form (Bro & de Jong 1997). If the
  residual vanishes before the budget is used, the rest is filled at random (as GradMatch
  does) with the mean weight.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from annotated_types import Ge, Interval

from coretune.selectors.base import Selection, SelectionContext, register_selector
from coretune.selectors.proxies import GradEmbedding
from coretune.selectors.submodular import (
    DenseKernel,
    FacilityLocation,
    gradient_kernel,
    lazy_greedy,
)


def medoid_weights(kernel, chosen: np.ndarray, g: GradEmbedding) -> np.ndarray:
    """CRAIG's weights: how many samples each chosen point is the most similar chosen one to."""
    chosen = np.asarray(chosen, dtype=np.int64)
    if isinstance(kernel, DenseKernel):
        nearest = np.argmax(kernel.sim[:, chosen], axis=1)
    else:  # nearest chosen point in the sketch space
        import faiss

        sketch = g.sketch(256)
        index = faiss.IndexFlatL2(sketch.shape[1])
        index.add(np.ascontiguousarray(sketch[chosen]))
        nearest = index.search(np.ascontiguousarray(sketch), 1)[1][:, 0]
        nearest[chosen] = np.arange(chosen.size)  # every medoid covers itself
    return np.bincount(nearest, minlength=chosen.size).astype(np.float64)


@register_selector("craig", needs={"grad_embed"}, class_balanced=True,
                   paper="Mirzasoleiman, Bilmes & Leskovec, Coresets for Data-efficient "
                         "Training of Machine Learning Models, ICML 2020")
def craig(ctx: SelectionContext, budget: int, dense_max: Annotated[int, Ge(2)] = 5000,
          k: Annotated[int, Ge(1)] = 10) -> Selection:
    """Weighted medoids of the gradient embeddings (facility location, Euclidean)."""
    g: GradEmbedding = ctx.artifact("grad_embed")
    kernel = gradient_kernel(g, "euclidean", dense_max, k, ctx.seed)
    fl = FacilityLocation(kernel)
    chosen = np.array(lazy_greedy(fl.gain, fl.add, fl.initial(), budget), dtype=np.int64)
    return Selection(chosen, medoid_weights(kernel, chosen, g))


def nnls_gram(q: np.ndarray, b: np.ndarray, w0: np.ndarray | None = None,
              tol: float = 1e-12) -> np.ndarray:
    """argmin_{w ≥ 0} ½wᵀQw − bᵀw for positive semi-definite ``Q`` (the Gram form of
    NNLS: Q = AᵀA + λI, b = Aᵀt), by Lawson–Hanson's active set in the Gram form of Bro &
    de Jong (1997), warm-started from a feasible ``w0``: OMP adds one column per step, so
    a step costs a few solves on the support instead of a solve from nothing."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve, lstsq

    n = b.size
    w = np.zeros(n) if w0 is None else np.maximum(np.asarray(w0, dtype=np.float64), 0.0)
    passive = w > 0
    scale = max(1.0, float(np.abs(b).max()))

    def solve(mask: np.ndarray) -> np.ndarray:
        z = np.zeros(n)
        if mask.any():
            sub = q[np.ix_(mask, mask)]
            try:
                z[mask] = cho_solve(cho_factor(sub), b[mask])
            except LinAlgError:  # singular support (λ = 0, dependent columns)
                z[mask] = lstsq(sub, b[mask])[0]
        return z

    def feasible(mask: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move from feasible ``w`` towards the unconstrained solution on ``mask``,
        dropping the coordinates that hit zero, until the solution is positive."""
        for _ in range(3 * n + 10):
            z = solve(mask)
            bad = mask & (z <= tol * scale)
            if not bad.any():
                return z, mask
            alpha = np.min(w[bad] / np.maximum(w[bad] - z[bad], 1e-300))
            w = w + alpha * (z - w)
            mask = mask & (w > tol * scale)
        return np.maximum(z, 0.0), mask

    if passive.any():
        w, passive = feasible(passive, w)
    for _ in range(3 * n + 10):
        grad = b - q @ w  # the negative gradient; KKT: ≤ 0 off the support
        grad[passive] = -np.inf
        j = int(np.argmax(grad))
        if grad[j] <= tol * scale:
            break
        passive[j] = True
        w, passive = feasible(passive, w)
    return w


def omp_nonneg(gram: np.ndarray, budget: int, lam: float, tol: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative OMP matching the sum of all columns, on the Gram matrix ``G = AᵀA``.

    Target ``t = A·1``; correlations with the residual are ``Aᵀr = G·1 − G[:, S]·w``.
    Stops at ``budget`` picks, when no sample correlates positively with the residual, or
    when ``‖r‖ ≤ tol·‖t‖``. Returns (picked positions, their weights): each step's weights
    are the ridge NNLS fit on the support, warm-started from the previous step's.
    """
    n = len(gram)
    b = gram.sum(axis=1)  # Aᵀt
    target_sq = float(b.sum())  # ‖t‖² = 1ᵀG1
    chosen: list[int] = []
    cols = np.empty((n, budget))  # G[:, S], grown one column per pick (no copies)
    w = np.zeros(0)
    free = np.ones(n, dtype=bool)
    for t in range(budget):
        g_s = cols[:, :t]
        corr = b - g_s @ w
        corr[~free] = -np.inf
        j = int(np.argmax(corr))
        residual_sq = target_sq - 2.0 * w @ b[chosen] + w @ (g_s[chosen] @ w)
        if corr[j] <= 0 or residual_sq <= (tol ** 2) * target_sq:
            break
        chosen.append(j)
        free[j] = False
        cols[:, t] = gram[:, j]
        q = cols[chosen, :t + 1] + lam * np.eye(t + 1)
        w = nnls_gram(q, b[chosen], np.append(w, 0.0))
    return np.array(chosen, dtype=np.int64), w


@register_selector("gradmatch", needs={"grad_embed"}, class_balanced=True,
                   paper="Killamsetty et al., GRAD-MATCH: Gradient Matching based Data "
                         "Subset Selection for Efficient Deep Model Training, ICML 2021")
def gradmatch(ctx: SelectionContext, budget: int,
              lam: Annotated[float, Interval(ge=0.0, le=1e6)] = 0.5,
              tol: Annotated[float, Interval(ge=0.0, lt=1.0)] = 1e-4) -> Selection:
    """Non-negative OMP on the gradient Gram matrix; weights match the gradient sum."""
    g: GradEmbedding = ctx.artifact("grad_embed")
    chosen, w = omp_nonneg(g.gram(), budget, lam, tol)
    if chosen.size < budget:  # residual exhausted: fill at random, as GradMatch does
        rest = np.setdiff1d(np.arange(len(g)), chosen)
        extra = ctx.rng().choice(rest, budget - chosen.size, replace=False)
        fill = float(w[w > 0].mean()) if (w > 0).any() else 1.0
        chosen = np.concatenate([chosen, extra])
        w = np.concatenate([w, np.full(extra.size, fill)])
    return Selection(chosen, w)
