"""Facility location and graph cut: lazy greedy against brute-force greedy, sparse kernels."""

from __future__ import annotations

import numpy as np
import pytest

from coretune.selectors.submodular import (
    DenseKernel,
    FacilityLocation,
    GraphCut,
    SparseKernel,
    dense_similarity,
    knn_kernel,
    maximise,
)


def brute_force_greedy(value, n: int, budget: int) -> list[int]:
    """Plain greedy: evaluate the objective of S ∪ {j} for every j at every step."""
    chosen: list[int] = []
    for _ in range(budget):
        best = max((j for j in range(n) if j not in chosen), key=lambda j: (
            value(chosen + [j]), -j))
        chosen.append(best)
    return chosen


def fl_value(sim: np.ndarray, s: list[int]) -> float:
    return float(sim[:, s].max(axis=1).sum())


def gc_value(sim: np.ndarray, s: list[int], lam: float) -> float:
    return float(sim[:, s].sum() - lam * sim[np.ix_(s, s)].sum())


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_facility_location_lazy_equals_brute_force(metric):
    x = np.random.default_rng(0).normal(size=(60, 4))
    sim = dense_similarity(x, metric)
    got = maximise(FacilityLocation(DenseKernel(sim)), 12, "lazy", np.random.default_rng(0))
    assert got == brute_force_greedy(lambda s: fl_value(sim, s), 60, 12)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_graph_cut_lazy_equals_brute_force(lam):
    sim = dense_similarity(np.random.default_rng(1).normal(size=(40, 3)), "cosine")
    got = maximise(GraphCut(DenseKernel(sim), lam), 10, "lazy", np.random.default_rng(0))
    assert got == brute_force_greedy(lambda s: gc_value(sim, s, lam), 40, 10)


def test_sparse_knn_kernel_greedy_equals_brute_force_on_the_same_kernel():
    x = np.random.default_rng(2).normal(size=(80, 5))
    kernel = knn_kernel(x, "cosine", k=6)
    dense = kernel.m.toarray()
    assert np.allclose(dense, dense.T) and (np.count_nonzero(dense, axis=1) <= 1 + 2 * 6).all()
    got = maximise(FacilityLocation(kernel), 15, "lazy", np.random.default_rng(0))
    assert got == brute_force_greedy(lambda s: fl_value(dense, s), 80, 15)
    got = maximise(GraphCut(SparseKernel(dense), 0.5), 15, "lazy", np.random.default_rng(0))
    assert got == brute_force_greedy(lambda s: gc_value(dense, s, 0.5), 80, 15)


def test_stochastic_greedy_is_near_the_greedy_value():
    sim = dense_similarity(np.random.default_rng(3).normal(size=(300, 6)), "cosine")
    greedy = maximise(FacilityLocation(DenseKernel(sim)), 30, "lazy", np.random.default_rng(0))
    fast = maximise(FacilityLocation(DenseKernel(sim)), 30, "stochastic",
                    np.random.default_rng(0))
    assert len(set(fast)) == 30
    assert fl_value(sim, fast) >= (1 - 1 / np.e - 0.01) * fl_value(sim, greedy)
