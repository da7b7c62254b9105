"""Submodular coresets: facility location and graph cut, maximised by lazy or stochastic greedy.

- Facility location (Cornuéjols et al. 1977; as a coreset objective in CRAIG and DeepCore):
  ``F(S) = Σ_i max_{j∈S} s_ij``.
- Graph cut (Iyer & Bilmes 2013; DeepCore's GraphCut): ``G(S) = Σ_{i∈V} Σ_{j∈S} s_ij −
  λ Σ_{i,j∈S} s_ij``.
- Lazy greedy (Minoux 1978) gives the same selection as the plain greedy (ties to the
  lowest index) with far fewer gain evaluations; stochastic greedy (Mirzasoleiman et al.,
  AAAI 2015) evaluates ``(n/budget)·ln(1/ε)`` random candidates per step, (1 − 1/e − ε)
  in expectation.

Kernels: dense for up to ``dense_max`` samples (O(n²) memory, all pairs), else a sparse
symmetrised k-NN kernel from faiss (O(n·k) memory). Similarities are non-negative:
``(1 + cos)/2`` for cosine, ``d_max − d`` for Euclidean distances (CRAIG, Eq. 9). Time:
dense O(n²·D) to build, O(n) per gain; sparse O(n·k) per pass plus the k-NN search.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
from annotated_types import Ge, Interval

from coretune.selectors.base import Selection, SelectionContext, register_selector
from coretune.selectors.neighbors import knn_graph
from coretune.selectors.proxies import GradEmbedding

Embedding = Literal["grad", "features"]
Metric = Literal["cosine", "euclidean"]
Optimizer = Literal["lazy", "stochastic"]


class DenseKernel:
    """All pairwise similarities ``s[i, j]`` (symmetric, non-negative)."""

    def __init__(self, sim: np.ndarray):
        self.sim = np.asarray(sim, dtype=np.float64)
        self.n = self.sim.shape[0]

    def column(self, j: int) -> tuple[np.ndarray | None, np.ndarray]:
        return None, self.sim[:, j]

    def columns(self, js: np.ndarray) -> np.ndarray:
        return self.sim[:, js]

    def colsum(self) -> np.ndarray:
        return self.sim.sum(axis=0)

    def diag(self) -> np.ndarray:
        return np.diag(self.sim).copy()


class SparseKernel:
    """A symmetric sparse similarity matrix (CSC), e.g. from a k-NN graph."""

    def __init__(self, matrix):
        import scipy.sparse as sp

        self.m = sp.csc_matrix(matrix, dtype=np.float64)
        self.m.sort_indices()
        self.n = self.m.shape[0]

    def column(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.m.indptr[j], self.m.indptr[j + 1]
        return self.m.indices[lo:hi], self.m.data[lo:hi]

    def colsum(self) -> np.ndarray:
        return np.asarray(self.m.sum(axis=0)).ravel()

    def diag(self) -> np.ndarray:
        return self.m.diagonal().astype(np.float64)


Kernel = DenseKernel | SparseKernel


def dense_similarity(x: np.ndarray, metric: Metric) -> np.ndarray:
    """All-pairs similarity of the rows of ``x``: (1 + cos)/2, or d_max − d."""
    x = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return np.clip((1.0 + xn @ xn.T) / 2.0, 0.0, 1.0)
    sq = (x * x).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    return d.max() - d


def knn_kernel(x: np.ndarray, metric: Metric, k: int, seed: int = 0) -> SparseKernel:
    """Sparse kernel: each row's k nearest neighbours (faiss), symmetrised by the maximum,
    with self-similarity on the diagonal."""
    import scipy.sparse as sp

    n = x.shape[0]
    idx, dist = knn_graph(x, min(k, n - 1), metric, seed=seed)
    if metric == "cosine":
        sim, top = 1.0 - dist / 2.0, 1.0  # dist = 1 − cos
    else:
        top = float(dist.max()) * (1 + 1e-6) + 1e-12
        sim = top - dist
    rows = np.repeat(np.arange(n), idx.shape[1])
    w = sp.csr_matrix((sim.ravel().astype(np.float64), (rows, idx.ravel())), shape=(n, n))
    w = w.maximum(w.T) + sp.identity(n, format="csr") * top
    return SparseKernel(w)


def similarity_kernel(x: np.ndarray, metric: Metric, dense_max: int, k: int,
                      seed: int = 0) -> Kernel:
    """Dense kernel up to ``dense_max`` rows, sparse k-NN kernel above."""
    if x.shape[0] <= dense_max:
        return DenseKernel(dense_similarity(x, metric))
    return knn_kernel(x, metric, k, seed)


def gradient_kernel(g: GradEmbedding, metric: Metric, dense_max: int, k: int,
                    seed: int = 0) -> Kernel:
    """Kernel over last-layer gradient embeddings: the closed-form Gram for small n, a
    k-NN kernel on a TensorSketch of the embeddings above ``dense_max``."""
    n = len(g)
    if n > dense_max:
        return knn_kernel(g.sketch(256, seed), metric, k, seed)
    if metric == "cosine":
        norms = np.maximum(g.norms(), 1e-12)
        return DenseKernel(np.clip((1.0 + g.gram() / np.outer(norms, norms)) / 2.0, 0.0, 1.0))
    d = np.sqrt(g.sq_distances())
    return DenseKernel(d.max() - d)


def lazy_greedy(gain: Callable[[int], float], add: Callable[[int], None],
                upper_bounds: np.ndarray, budget: int) -> list[int]:
    """Greedy maximisation with stale upper bounds (valid for submodular objectives): the
    top of the heap is taken once its gain is fresh for the current set."""
    heap = [(-float(b), j, 0) for j, b in enumerate(upper_bounds)]
    heapq.heapify(heap)
    chosen: list[int] = []
    while len(chosen) < budget:
        neg, j, stamp = heapq.heappop(heap)
        if stamp == len(chosen):
            chosen.append(j)
            add(j)
        else:
            heapq.heappush(heap, (-gain(j), j, len(chosen)))
    return chosen


def stochastic_greedy(gains: Callable[[np.ndarray], np.ndarray], add: Callable[[int], None],
                      n: int, budget: int, rng: np.random.Generator, eps: float = 0.01
                      ) -> list[int]:
    """Stochastic greedy: each step, the best of ⌈(n/budget)·ln(1/ε)⌉ random candidates."""
    size = max(1, math.ceil(n / budget * math.log(1.0 / eps)))
    free = np.ones(n, dtype=bool)
    chosen: list[int] = []
    for _ in range(budget):
        pool = np.flatnonzero(free)
        cand = pool if pool.size <= size else rng.choice(pool, size, replace=False)
        j = int(cand[int(np.argmax(gains(cand)))])
        chosen.append(j)
        free[j] = False
        add(j)
    return chosen


class FacilityLocation:
    """``F(S) = Σ_i max_{j∈S} s_ij``; ``cover[i]`` is the current max over S."""

    def __init__(self, kernel: Kernel):
        self.k = kernel
        self.cover = np.zeros(kernel.n)

    def gain(self, j: int) -> float:
        rows, vals = self.k.column(j)
        cur = self.cover if rows is None else self.cover[rows]
        return float(np.maximum(vals - cur, 0.0).sum())

    def gains(self, js: np.ndarray) -> np.ndarray:
        if isinstance(self.k, DenseKernel):
            return np.maximum(self.k.columns(js) - self.cover[:, None], 0.0).sum(axis=0)
        return np.array([self.gain(int(j)) for j in js])

    def initial(self) -> np.ndarray:
        """Gains on the empty set: column sums (similarities are non-negative)."""
        return self.k.colsum()

    def add(self, j: int) -> None:
        rows, vals = self.k.column(j)
        if rows is None:
            np.maximum(self.cover, vals, out=self.cover)
        else:
            self.cover[rows] = np.maximum(self.cover[rows], vals)

    def value(self, chosen: list[int]) -> float:
        cover = np.zeros(self.k.n)
        for j in chosen:
            rows, vals = self.k.column(j)
            if rows is None:
                cover = np.maximum(cover, vals)
            else:
                cover[rows] = np.maximum(cover[rows], vals)
        return float(cover.sum())


class GraphCut:
    """``G(S) = Σ_{i∈V, j∈S} s_ij − λ Σ_{i,j∈S} s_ij``; gain of j is
    ``colsum_j − λ·(2·Σ_{i∈S} s_ij + s_jj)``."""

    def __init__(self, kernel: Kernel, lam: float):
        self.k, self.lam = kernel, lam
        self.colsum, self.diag = kernel.colsum(), kernel.diag()
        self.inside = np.zeros(kernel.n)  # Σ_{i∈S} s_ij

    def gains(self, js: np.ndarray) -> np.ndarray:
        return self.colsum[js] - self.lam * (2.0 * self.inside[js] + self.diag[js])

    def gain(self, j: int) -> float:
        return float(self.colsum[j] - self.lam * (2.0 * self.inside[j] + self.diag[j]))

    def initial(self) -> np.ndarray:
        return self.gains(np.arange(self.k.n))

    def add(self, j: int) -> None:
        rows, vals = self.k.column(j)  # symmetric: row j is column j
        if rows is None:
            self.inside += vals
        else:
            self.inside[rows] += vals


def maximise(objective: FacilityLocation | GraphCut, budget: int, optimizer: Optimizer,
             rng: np.random.Generator) -> list[int]:
    n = objective.k.n
    if optimizer == "stochastic":
        return stochastic_greedy(objective.gains, objective.add, n, budget, rng)
    return lazy_greedy(objective.gain, objective.add, objective.initial(), budget)


def _kernel(ctx: SelectionContext, embedding: Embedding, metric: Metric, dense_max: int,
            k: int) -> Kernel:
    if embedding == "grad":
        return gradient_kernel(ctx.artifact("grad_embed"), metric, dense_max, k, ctx.seed)
    return similarity_kernel(ctx.artifact("features"), metric, dense_max, k, ctx.seed)


def _embedding_needs(args: dict) -> set[str]:
    return {"grad_embed" if args.get("embedding", "grad") == "grad" else "features"}


@register_selector("facility_location", needs=_embedding_needs, class_balanced=True,
                   paper="facility location (Cornuéjols et al. 1977) on last-layer gradients "
                         "or features, as in DeepCore (Guo et al., DEXA 2022)")
def facility_location(ctx: SelectionContext, budget: int, embedding: Embedding = "grad",
                      metric: Metric = "cosine", optimizer: Optimizer = "lazy",
                      k: Annotated[int, Ge(1)] = 10,
                      dense_max: Annotated[int, Ge(2)] = 5000) -> Selection:
    """Greedy facility location: the samples that best "cover" all others."""
    kernel = _kernel(ctx, embedding, metric, dense_max, k)
    return Selection(np.array(maximise(FacilityLocation(kernel), budget, optimizer, ctx.rng())))


@register_selector("graph_cut", needs=_embedding_needs, class_balanced=True,
                   paper="graph cut (Iyer & Bilmes 2013) as in DeepCore (Guo et al., DEXA 2022)")
def graph_cut(ctx: SelectionContext, budget: int, embedding: Embedding = "grad",
              metric: Metric = "cosine", optimizer: Optimizer = "lazy",
              lam: Annotated[float, Interval(ge=0.0, le=1.0)] = 1.0,
              k: Annotated[int, Ge(1)] = 10,
              dense_max: Annotated[int, Ge(2)] = 5000) -> Selection:
    """Greedy graph cut: representative (high similarity to all) yet diverse (penalised
    similarity within the set, weight λ)."""
    kernel = _kernel(ctx, embedding, metric, dense_max, k)
    return Selection(np.array(maximise(GraphCut(kernel, lam), budget, optimizer, ctx.rng())))


__all__ = ["DenseKernel", "FacilityLocation", "GraphCut", "SparseKernel", "dense_similarity",
           "gradient_kernel", "knn_kernel", "lazy_greedy", "maximise", "similarity_kernel",
           "stochastic_greedy"]
