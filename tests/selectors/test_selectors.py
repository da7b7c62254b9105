"""Selector contract, registry rules, and hand-worked cases for each method."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coretune.selectors import (
    MissingArtifactError,
    Selection,
    SelectionContext,
    SelectorArgumentError,
    UnknownSelectorError,
    available_selectors,
    get_selector,
    register_selector,
    select,
)
from coretune.selectors.base import _REGISTRY
from coretune.selectors.ccs import ccs_stratum_quotas, equal_width_strata
from coretune.selectors.random_sampling import balanced_quotas

N, K = 500, 10


def full_context(seed: int = 0, n: int = N) -> SelectionContext:
    rng = np.random.default_rng(123)
    return SelectionContext(
        num_samples=n, num_classes=K, seed=seed, labels_=rng.integers(0, K, n),
        scores_={"aum": rng.normal(size=n), "forgetting": rng.integers(0, 6, n).astype(float),
                 "el2n": rng.random(n)})


def context_for(name: str, seed: int = 0) -> SelectionContext:
    """A context holding only what ``name`` declares (as the harness builds it)."""
    full = full_context(seed)
    needs = get_selector(name).needs({})
    return SelectionContext(N, K, seed, labels_=full.labels_ if "labels" in needs else None,
                            scores_=full.scores_ if "scores" in needs else None)


@pytest.mark.parametrize("name", available_selectors())
@pytest.mark.parametrize("budget", [1, 37, N])
def test_contract_exact_budget_unique_in_range_deterministic(name, budget):
    sel = select(name, context_for(name), budget)
    idx = sel.indices
    assert idx.size == budget and np.unique(idx).size == budget
    assert idx.min() >= 0 and idx.max() < N and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, select(name, context_for(name), budget).indices)


def test_random_depends_on_seed():
    a = select("random", context_for("random", 0), 50).indices
    b = select("random", context_for("random", 1), 50).indices
    assert not np.array_equal(a, b)


def test_registry_errors():
    with pytest.raises(UnknownSelectorError, match="available: .*random"):
        get_selector("herding_typo")
    with pytest.raises(SelectorArgumentError, match="nonsense"):
        select("ccs", full_context(), 10, nonsense=1)
    with pytest.raises(MissingArtifactError, match="scores"):
        select("aum", SelectionContext(N, K, 0), 10)  # scores not in context
    with pytest.raises(ValueError, match="may not need labels"):
        register_selector("_bad_label_free", needs={"labels"}, label_free=True)(
            lambda ctx, budget: Selection(np.arange(budget)))
    assert "_bad_label_free" not in _REGISTRY


def test_contract_violations_are_caught():
    @register_selector("_returns_too_few")
    def too_few(ctx, budget):
        return Selection(np.arange(budget - 1))

    try:
        with pytest.raises(RuntimeError, match="exactly 10"):
            select("_returns_too_few", full_context(), 10)
    finally:
        _REGISTRY.pop("_returns_too_few")


def test_label_free_selectors_never_see_labels():
    """Every label-free selector runs on a context without labels; reading labels fails."""

    @register_selector("_peeks_at_labels", label_free=True)
    def peeks(ctx, budget):
        return Selection(np.argsort(ctx.labels)[:budget])

    try:
        label_free = [n for n in available_selectors() if get_selector(n).label_free]
        assert "_peeks_at_labels" in label_free
        for name in label_free:
            needs = get_selector(name).needs({})
            assert "labels" not in needs
            ctx = SelectionContext(N, K, 0)  # what the harness builds: no labels
            if name == "_peeks_at_labels":
                with pytest.raises(MissingArtifactError, match="labels"):
                    select(name, ctx, 10)
            elif not needs:
                assert select(name, ctx, 10).indices.size == 10
    finally:
        _REGISTRY.pop("_peeks_at_labels")


def test_class_balanced_random_spreads_evenly_and_water_fills():
    ctx = full_context()
    counts = np.bincount(ctx.labels[select("random", ctx, 73, class_balanced=True).indices],
                         minlength=K)
    assert counts.sum() == 73 and counts.max() - counts.min() <= 1
    # a class of 2 samples cannot take its share of 5: the other classes absorb the rest
    quotas = balanced_quotas(np.array([2, 50, 50, 50]), 20, np.random.default_rng(0))
    assert quotas.tolist()[0] == 2 and quotas.sum() == 20 and set(quotas[1:]) == {6}


@pytest.mark.parametrize("name,raw,hardest", [
    ("forgetting", [0, 5, 2, 9, 1], [1, 3]),  # most forgotten
    ("el2n", [0.1, 0.9, 0.5, 0.8, 0.0], [1, 3]),  # largest error norm
    ("aum", [3.0, -2.0, 1.0, -5.0, 4.0], [1, 3]),  # lowest margin
])
def test_difficulty_selectors_hand_worked(name, raw, hardest):
    ctx = SelectionContext(5, 2, 0, scores_={name: np.array(raw, dtype=float)})
    assert select(name, ctx, 2).indices.tolist() == hardest
    easiest = sorted(set(range(5)) - set(hardest) - {2})
    assert select(name, ctx, 2, keep="easiest").indices.tolist() == easiest
    with pytest.raises(SelectorArgumentError, match="keep"):
        select(name, ctx, 2, keep="median")


def test_ccs_quotas_hand_worked():
    assert ccs_stratum_quotas(np.array([2, 10, 10]), 12).tolist() == [2, 5, 5]
    assert ccs_stratum_quotas(np.array([0, 3, 8]), 9).tolist() == [0, 3, 6]
    assert ccs_stratum_quotas(np.array([4, 4, 4]), 7).tolist() == [2, 2, 3]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.data())
def test_ccs_quotas_property(sizes, data):
    sizes = np.array(sizes)
    budget = data.draw(st.integers(0, int(sizes.sum())))
    q = ccs_stratum_quotas(sizes, budget)
    assert q.sum() == budget and np.all(q <= sizes) and np.all(q >= 0)


def test_ccs_prunes_hardest_and_fills_strata_as_algorithm_1():
    # 100 samples, AUM values 0..99 (low AUM = hard). β=0.1 removes AUM 0..9.
    # The remaining 90 values 10..99 fall into 3 equal-width strata of 30 each
    # (difficulty = -AUM spans [-99, -10]); budget 30 → 10 per stratum.
    aum = np.arange(100, dtype=float)
    ctx = SelectionContext(100, 2, 0, scores_={"aum": aum})
    idx = select("ccs", ctx, 30, score="aum", beta=0.1, strata=3).indices
    assert idx.min() >= 10  # none of the 10 hardest
    strata = np.digitize(aum[idx], [40, 70])
    assert np.bincount(strata).tolist() == [10, 10, 10]


def test_ccs_uneven_strata_pass_budget_on():
    # difficulty clusters: 2 samples in the hardest stratum, 48 in each of the others
    aum = np.concatenate([np.full(2, 0.0), np.linspace(1, 2, 48), np.linspace(3, 4, 48)])
    strata_ids = equal_width_strata(-aum, 4)
    sizes = np.bincount(strata_ids, minlength=4)
    ctx = SelectionContext(aum.size, 2, 0, scores_={"aum": aum})
    idx = select("ccs", ctx, 20, score="aum", beta=0.0, strata=4).indices
    got = np.bincount(strata_ids[idx], minlength=4)
    assert got.tolist() == ccs_stratum_quotas(sizes, 20).tolist() and got.sum() == 20


def test_ccs_argument_checks():
    ctx = full_context()
    with pytest.raises(SelectorArgumentError, match="beta"):
        select("ccs", ctx, 10, beta=1.0)
    with pytest.raises(SelectorArgumentError, match="strata"):
        select("ccs", ctx, 10, strata=0)
    # β larger than the budget allows: never prune below the budget
    assert select("ccs", ctx, N - 5, beta=0.5).indices.size == N - 5
