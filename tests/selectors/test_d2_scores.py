"""D², double-end pruning, DUAL and CLD on hand-worked examples; score orientation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coretune.artifacts.dynamics import uncertainty_scores
from coretune.selectors import SelectionContext, select
from coretune.selectors.cld import cld_scores
from coretune.selectors.d2 import d2_select, forward_messages, reverse_greedy
from coretune.selectors.dual import dual_scores, forward_fill
from coretune.selectors.samplers import double_end_prune


def test_d2_forward_and_reverse_passes_hand_worked():
    # a path 0 — 1 — 2 — 3, every edge at distance 1 (both directions listed)
    nbr = np.array([[1, -1], [0, 2], [1, 3], [2, -1]])
    dist = np.where(nbr >= 0, 1.0, np.inf)
    s = np.array([1.0, 0.5, 0.0, 0.8])
    e1 = np.exp(-1.0)
    fwd = forward_messages(s, nbr, dist, 1.0)
    assert fwd == pytest.approx([1 + 0.5 * e1, 0.5 + 1.0 * e1, 0.0 + (0.5 + 0.8) * e1,
                                 0.8 + 0.0 * e1])
    # reverse: pick 0 (1.184); node 1 drops by e^{-γ}·1.184 (γ = 1): 0.868 − 0.435 = 0.432
    # then 3 (0.8), lowering node 2: 0.478 − e^{-1}·0.8 = 0.184; then 1 (0.432)
    assert reverse_greedy(fwd, nbr, dist, 3, 1.0).tolist() == [0, 3, 1]
    # with γ = 10 a pick barely lowers its neighbours: 1 (0.868) comes before 3 (0.8)
    assert reverse_greedy(fwd, nbr, dist, 3, 10.0).tolist() == [0, 1, 3]
    # with γ = 0 it lowers them by its whole score: 1 → −0.316 and 2 → −0.322, so 1 third
    assert reverse_greedy(fwd, nbr, dist, 4, 0.0).tolist() == [0, 3, 1, 2]


def test_d2_hard_prunes_beta_and_normalises():
    nbr = np.array([[1], [0], [3], [2]])
    dist = np.ones((4, 1))
    s = np.array([10.0, 0.0, 5.0, 2.0])  # normalised to 1, 0, 0.5, 0.2
    # β drops node 0; forward: 1 → 0, 2 → 0.5 + 0.2/e = 0.574, 3 → 0.2 + 0.5/e = 0.384;
    # picking 2 lowers its neighbour 3 by e^{-0.1}·0.574 to −0.135, below node 1 (0)
    assert d2_select(s, nbr, dist, 2, 1.0, 0.1, beta=0.25).tolist() == [2, 1]
    assert sorted(d2_select(s, nbr, dist, 4, 1.0, 0.1, beta=0.9).tolist()) == [0, 1, 2, 3]


def test_double_end_pruning_hand_worked_and_never_empty():
    d = np.array([0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4, 0.0])  # hardest: 0, 5, 3, 7, ...
    rng = np.random.default_rng(0)
    # β = 0.2 drops 0 and 5; then the 3 hardest of the rest: 3, 7, 2
    assert sorted(double_end_prune(d, 3, 0.2, rng).tolist()) == [2, 3, 7]
    # β + ratio > 1: the cut shrinks to N − budget, never an empty or short coreset
    assert sorted(double_end_prune(d, 6, 0.9, rng).tolist()) == [1, 2, 4, 6, 8, 9]
    assert double_end_prune(d, 10, 0.5, rng).size == 10
    ctx = SelectionContext.from_needs(10, 2, 0, {"scores": {"aum": -d}})
    assert sorted(select("double_end", ctx, 3, score="aum", beta=0.2).indices) == [2, 3, 7]


def test_uncertainty_orientation_keeps_the_most_uncertain():
    # sample 0 certain, 1 split between two classes, 2 uniform: uncertainty rises 0 < 1 < 2
    # for entropy and least confidence; the margin p1 − p2 is lowest for 2 and 1
    probs = torch.tensor([[0.98, 0.01, 0.01], [0.5, 0.49, 0.01], [1 / 3, 1 / 3, 1 / 3]])
    scores = {k: v.numpy() for k, v in uncertainty_scores(probs).items()}
    assert np.argsort(scores["entropy"]).tolist() == [0, 1, 2]
    assert np.argsort(scores["least_confidence"]).tolist() == [0, 1, 2]
    assert np.argsort(-scores["margin"]).tolist() == [0, 1, 2]
    ctx = SelectionContext.from_needs(3, 3, 0, {"scores": scores})
    for score in ("entropy", "least_confidence", "margin"):
        assert select("uncertainty", ctx, 1, score=score).indices.tolist() == [2], score
        assert select("uncertainty", ctx, 1, score=score,
                      keep="easiest").indices.tolist() == [0], score


def test_dual_against_a_window_loop():
    rng = np.random.default_rng(0)
    p = rng.random((2, 9, 5))
    ref = np.zeros(5)
    for r in range(2):
        per = [(1 - p[r, k:k + 4].mean(0)) * p[r, k:k + 4].std(0) for k in range(9 - 4 + 1)]
        ref += np.mean(per, axis=0) / 2
    assert dual_scores(p, 4) == pytest.approx(ref)
    assert dual_scores(p, 4, epochs=6) == pytest.approx(dual_scores(p[:, :6], 4))


def test_forward_fill_fills_unpresented_epochs():
    p = np.array([[[0.1, 0.2], [np.nan, 0.3], [0.5, np.nan]]])
    assert forward_fill(p).tolist() == [[[0.1, 0.2], [0.1, 0.3], [0.5, 0.3]]]


def test_cld_is_the_pearson_correlation_of_differences():
    rng = np.random.default_rng(1)
    losses = rng.random((1, 8, 4))
    val = np.sort(rng.random((1, 8)))[:, ::-1]
    ref = [np.corrcoef(np.diff(losses[0, :, i]), np.diff(val[0]))[0, 1] for i in range(4)]
    assert cld_scores(losses, val) == pytest.approx(ref)
    flat = np.ones((1, 5, 1))
    assert cld_scores(flat, val[:, :5]).tolist() == [0.0]
