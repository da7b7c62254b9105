"""Registry rules and the selection contract, checked over every registered selector."""

from __future__ import annotations

import numpy as np
import pytest

from coretune.selectors import (
    MissingArtifactError,
    Selection,
    SelectionContext,
    SelectorArgumentError,
    UnknownSelectorError,
    available_selectors,
    budget_for,
    get_selector,
    register_selector,
    select,
)
from coretune.selectors.base import SELECTORS
from tests.selectors.conftest import CORESETS, K, N, context_for, full_context

BUDGETS = [1, 37, N]


@pytest.fixture
def temporary():
    """Names registered by a test vanish from the registry afterwards."""
    with SELECTORS.temporary():
        yield []


@pytest.mark.parametrize("name", CORESETS)
@pytest.mark.parametrize("budget", BUDGETS)
def test_contract_exact_budget_unique_sorted_deterministic(name, budget):
    idx = select(name, context_for(name), budget).indices
    assert idx.dtype == np.int64 and idx.size == budget and np.unique(idx).size == budget
    assert idx.min() >= 0 and idx.max() < N and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, select(name, context_for(name), budget).indices)


@pytest.mark.parametrize("name,args", [
    ("random", {}), ("random", {"class_balanced": True}), ("ccs", {"beta": 0.2, "strata": 7}),
    ("forgetting", {}),  # integer counts: ties are broken by the seed
])
def test_randomised_selectors_depend_on_seed(name, args):
    a = select(name, context_for(name, 0, args), 37, **args).indices
    b = select(name, context_for(name, 1, args), 37, **args).indices
    assert a.size == b.size == 37 and not np.array_equal(a, b)


def test_unknown_selector_lists_available_names():
    with pytest.raises(UnknownSelectorError) as err:
        get_selector("herding_typo")
    assert all(name in str(err.value) for name in available_selectors())
    assert {"random", "forgetting", "el2n", "aum", "ccs"} <= set(available_selectors())


@pytest.mark.parametrize("name", CORESETS)
def test_unknown_argument_rejected(name):
    with pytest.raises(SelectorArgumentError, match="nonsense"):
        select(name, full_context(), 10, nonsense=1)


def test_declared_but_absent_artifact():
    with pytest.raises(MissingArtifactError, match="scores"):
        select("aum", SelectionContext(N, K, 0), 10)


def test_undeclared_artifact_is_withheld_even_if_present(temporary):
    @register_selector("_reads_labels", needs={"scores"})
    def reads_labels(ctx, budget):
        return np.argsort(ctx.labels)[:budget]

    temporary.append("_reads_labels")
    with pytest.raises(MissingArtifactError, match="labels"):
        select("_reads_labels", full_context(), 10)


def test_label_free_registration_may_not_need_labels(temporary):
    with pytest.raises(ValueError, match="may not need labels"):
        register_selector("_bad_label_free", needs={"labels"}, label_free=True)(
            lambda ctx, budget: np.arange(budget))
    assert "_bad_label_free" not in SELECTORS

    @register_selector("_labels_if_asked", label_free=True,
                       needs=lambda a: {"labels"} if a.get("peek") else set())
    def maybe(ctx, budget, peek: bool = False):
        return np.arange(budget)

    temporary.append("_labels_if_asked")
    assert select("_labels_if_asked", full_context(), 3).indices.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="may not need labels"):
        select("_labels_if_asked", full_context(), 3, peek=True)
    with pytest.raises(ValueError, match="unknown needs"):
        register_selector("_bad_needs", needs={"gradients"})(lambda ctx, budget: None)


LABEL_FREE = [n for n in available_selectors() if get_selector(n).label_free]


@pytest.mark.parametrize("name", LABEL_FREE)  # empty today: covers future label-free methods
def test_registered_label_free_selectors_run_without_labels(name):
    assert "labels" not in get_selector(name).needs({})
    ctx = context_for(name)
    assert ctx.labels_ is None
    assert select(name, ctx, 37).indices.size == 37


def test_label_free_guard_positive_control(temporary):
    seen = []

    @register_selector("_peeks_at_labels", label_free=True, needs={"embeddings"})
    def peeks(ctx, budget):
        seen.append(ctx.labels_)
        return np.argsort(ctx.labels)[:budget]

    temporary.append("_peeks_at_labels")
    assert get_selector("_peeks_at_labels").label_free
    for ctx in (context_for("_peeks_at_labels"), full_context()):  # even if handed labels
        with pytest.raises(MissingArtifactError, match="labels"):
            select("_peeks_at_labels", ctx, 10)
    assert seen == [None, None]


@pytest.mark.parametrize("bad,match", [
    (lambda b: np.arange(b - 1), "exactly 10"),
    (lambda b: np.zeros(b, dtype=np.int64), "exactly 10"),
    (lambda b: np.arange(b) + N - 5, "outside"),
    (lambda b: np.arange(b) + 0.5, "float64 indices"),
    (lambda b: Selection(np.arange(b), weights=np.ones(b + 1)), "weights"),
])
def test_contract_violations_are_caught(temporary, bad, match):
    register_selector("_broken")(lambda ctx, budget: bad(budget))
    temporary.append("_broken")
    with pytest.raises(RuntimeError, match=match):
        select("_broken", full_context(), 10)


def test_weights_follow_their_indices_when_sorted(temporary):
    register_selector("_weighted")(
        lambda ctx, budget: Selection(np.array([7, 2, 5]), weights=np.array([0.7, 0.2, 0.5])))
    temporary.append("_weighted")
    sel = select("_weighted", full_context(), 3)
    assert sel.indices.tolist() == [2, 5, 7] and sel.weights.tolist() == [0.2, 0.5, 0.7]


def test_budget_checks_and_budget_for():
    for budget in (0, N + 1):
        with pytest.raises(ValueError, match="budget"):
            select("random", full_context(), budget)
    with pytest.raises(TypeError, match="integer"):
        select("random", full_context(), 3.0)
    assert [budget_for(N, r) for r in (1e-6, 0.1, 1.0)] == [1, 50, N]
    with pytest.raises(ValueError):
        budget_for(N, 0.0)


def test_context_rejects_artifacts_of_the_wrong_length():
    with pytest.raises(ValueError, match="labels"):
        SelectionContext(N, K, 0, labels_=np.zeros(N - 1, dtype=np.int64))
    with pytest.raises(ValueError, match="aum"):
        SelectionContext(N, K, 0, scores_={"aum": np.zeros(N + 1)})
