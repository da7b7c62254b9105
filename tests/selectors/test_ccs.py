"""CCS (Zheng et al., ICLR 2023, Algorithm 1): quotas by hand, pruning, strata, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coretune.selectors import (
    MissingArtifactError,
    SelectionContext,
    SelectorArgumentError,
    select,
)
from coretune.selectors.ccs import ccs_stratum_quotas, equal_width_strata


def algorithm_1(sizes: list[int], m: int) -> list[int]:
    """Algorithm 1's loop written literally: pop the smallest stratum, give it min(|B|, ⌊m/|𝔅|⌋)."""
    left = dict(enumerate(sizes))
    quotas = [0] * len(sizes)
    while left:
        b = min(left, key=lambda i: (left[i], i))
        quotas[b] = min(left[b], m // len(left))
        m -= quotas[b]
        del left[b]
    return quotas


@pytest.mark.parametrize("sizes,budget,expected", [
    ([2, 10, 10], 12, [2, 5, 5]),
    ([0, 3, 8], 9, [0, 3, 6]),
    ([4, 4, 4], 7, [2, 2, 3]),
    ([3, 10, 10, 6], 16, [3, 4, 5, 4]),  # 3 → m=13; 6: ⌊13/3⌋=4 → m=9; 10: 4 → m=5; 10: 5
    ([5], 5, [5]),
    ([1, 1, 50], 0, [0, 0, 0]),
])
def test_quotas_hand_worked(sizes, budget, expected):
    assert ccs_stratum_quotas(np.array(sizes), budget).tolist() == expected


def test_quotas_reject_budget_above_total():
    with pytest.raises(ValueError):
        ccs_stratum_quotas(np.array([1, 2]), 4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.data())
def test_quotas_property(sizes, data):
    budget = data.draw(st.integers(0, sum(sizes)))
    q = ccs_stratum_quotas(np.array(sizes), budget)
    assert q.sum() == budget and np.all(q >= 0) and np.all(q <= np.array(sizes))
    assert q.tolist() == algorithm_1(sizes, budget)


def test_equal_width_strata():
    v = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 6.0])  # width 2 over [0, 6]; 6 closes the last bin
    assert equal_width_strata(v, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert equal_width_strata(np.full(4, 2.5), 10).tolist() == [0, 0, 0, 0]
    assert equal_width_strata(v, 1).tolist() == [0] * 6


def test_beta_prunes_exactly_the_hardest_and_strata_get_their_quotas():
    # AUM 0..99 on shuffled indices (low AUM = hard). β = 0.1 removes AUM 0..9; the rest,
    # difficulty −AUM ∈ [−99, −10], splits into 3 strata of 30 (AUM 70–99, 40–69, 10–39).
    rng = np.random.default_rng(0)
    aum = rng.permutation(100).astype(float)
    for seed in range(5):
        ctx = SelectionContext(100, 2, seed, scores_={"aum": aum})
        idx = select("ccs", ctx, 30, score="aum", beta=0.1, strata=3).indices
        assert not set(idx) & set(np.flatnonzero(aum < 10))
        assert np.bincount(np.digitize(aum[idx], [40, 70])).tolist() == [10, 10, 10]
    # budget 80 over three strata of 30: equal sizes go in id order, so stratum 0 (easiest,
    # AUM 70–99) takes ⌊80/3⌋ = 26, then AUM 40–69 takes ⌊54/2⌋ = 27 and AUM 10–39 the last 27
    idx = select("ccs", ctx, 80, score="aum", beta=0.1, strata=3).indices
    assert np.bincount(np.digitize(aum[idx], [40, 70])).tolist() == [27, 27, 26]


def test_uneven_strata_follow_algorithm_1():
    # EL2N (higher = harder) over [0, 4], 4 strata of width 1: sizes 3, 10, 10, 6
    el2n = np.concatenate([[0.0, 0.5, 0.5], np.full(10, 1.5), np.full(10, 2.5),
                           np.full(5, 3.5), [4.0]])
    ctx = SelectionContext(el2n.size, 2, 0, scores_={"el2n": el2n})
    idx = select("ccs", ctx, 16, score="el2n", strata=4).indices
    assert np.bincount(np.floor(np.minimum(el2n[idx], 3.9)).astype(int)).tolist() == [3, 4, 5, 4]


def test_hard_cutoff_never_goes_below_the_budget():
    aum = np.arange(100, dtype=float)
    ctx = SelectionContext(100, 2, 0, scores_={"aum": aum})
    idx = select("ccs", ctx, 80, beta=0.5).indices  # ⌊0.5·100⌋ = 50 capped at 20
    assert idx.tolist() == list(range(20, 100))


@settings(max_examples=100, deadline=None)
@given(st.integers(5, 300), st.data())
def test_ccs_property_distinct_scores(n, data):
    seed = data.draw(st.integers(0, 1000))
    d = np.random.default_rng(seed).normal(size=n)
    budget = data.draw(st.integers(1, n))
    beta = data.draw(st.floats(0.0, 0.99))
    strata = data.draw(st.integers(1, 60))
    ctx = SelectionContext(n, 2, seed, scores_={"el2n": d})
    idx = select("ccs", ctx, budget, score="el2n", beta=beta, strata=strata).indices
    assert idx.size == budget and np.unique(idx).size == budget
    kept = np.argsort(d)[: n - min(int(np.floor(beta * n)), n - budget)]
    assert set(idx) <= set(kept)
    ids = equal_width_strata(d[kept], strata)
    expected = ccs_stratum_quotas(np.bincount(ids, minlength=strata), budget)
    got = np.bincount(ids[np.isin(kept, idx)], minlength=strata)
    assert got.tolist() == expected.tolist()


def test_ccs_depends_on_seed_and_is_reproducible():
    d = np.random.default_rng(1).random(200)
    pick = [select("ccs", SelectionContext(200, 2, s, scores_={"aum": d}), 40,
                   beta=0.1, strata=5).indices for s in (0, 0, 1)]
    assert np.array_equal(pick[0], pick[1]) and not np.array_equal(pick[0], pick[2])


@pytest.mark.parametrize("args,match", [
    ({"beta": 1.0}, "beta"), ({"beta": -0.1}, "beta"), ({"beta": "0.1"}, "beta"),
    ({"beta": float("nan")}, "beta"), ({"strata": 0}, "strata"), ({"strata": 2.5}, "strata"),
    ({"strata": True}, "strata"), ({"score": "loss"}, "argument 'score'"),
])
def test_argument_checks(args, match):
    ctx = SelectionContext(10, 2, 0, scores_={"aum": np.arange(10.0)})
    with pytest.raises(SelectorArgumentError, match=match):
        select("ccs", ctx, 5, **args)


def test_missing_and_non_finite_scores():
    ctx = SelectionContext(4, 2, 0, scores_={"aum": np.array([0.0, 1.0, np.nan, 2.0])})
    with pytest.raises(ValueError, match="not finite"):
        select("ccs", ctx, 2)
    with pytest.raises(MissingArtifactError, match="el2n"):  # declared score, not in ctx
        select("ccs", ctx, 2, score="el2n")
