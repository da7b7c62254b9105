"""Random selection: uniform, and class-balanced with water-filling around small classes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coretune.selectors import MissingArtifactError, SelectionContext, get_selector, select
from coretune.selectors.random_sampling import balanced_quotas

N, K = 500, 10


def labelled(labels: np.ndarray, seed: int = 0) -> SelectionContext:
    labels = np.asarray(labels)
    return SelectionContext(labels.size, int(labels.max()) + 1, seed, labels_=labels)


def counts(ctx: SelectionContext, budget: int) -> np.ndarray:
    idx = select("random", ctx, budget, class_balanced=True).indices
    return np.bincount(ctx.labels[idx], minlength=ctx.num_classes)


def test_plain_random_needs_nothing_and_is_uniform_without_replacement():
    assert get_selector("random").needs({}) == frozenset()
    assert get_selector("random").needs({"class_balanced": True}) == {"labels"}
    hits = np.zeros(N)
    for seed in range(200):
        idx = select("random", SelectionContext(N, K, seed), 50).indices
        assert np.unique(idx).size == 50
        hits[idx] += 1
    # each sample is drawn with probability 0.1: 20 expected hits, sd ≈ 4.2
    assert abs(hits.mean() - 20) < 1e-9 and hits.min() >= 3 and hits.max() <= 40


def test_class_balanced_needs_labels():
    with pytest.raises(MissingArtifactError, match="labels"):
        select("random", SelectionContext(N, K, 0), 10, class_balanced=True)


@pytest.mark.parametrize("budget", [1, 9, 37, 73, 250, N])
def test_class_balanced_counts_differ_by_at_most_one(budget):
    labels = np.random.default_rng(0).permutation(np.arange(N) % K)  # 50 per class
    c = counts(labelled(labels), budget)
    assert c.sum() == budget and c.max() - c.min() <= 1


def test_class_balanced_picks_members_of_each_class_at_random():
    labels = np.arange(N) % K
    picks = [select("random", labelled(labels, s), 20, class_balanced=True).indices
             for s in range(5)]
    assert len({tuple(p) for p in picks}) == 5
    # remainder classes (budget 13 over 10 classes) vary with the seed
    extra = {tuple(np.flatnonzero(counts(labelled(labels, s), 13) == 2)) for s in range(10)}
    assert len(extra) > 1


def test_water_filling_tiny_class():
    # K = 4, budget 20: the class of 2 cannot take its 5; the other three absorb 3 more
    labels = np.concatenate([np.zeros(2, int), np.repeat([1, 2, 3], 50)])
    for seed in range(5):
        assert counts(labelled(labels, seed), 20).tolist() == [2, 6, 6, 6]
    assert balanced_quotas(np.array([2, 50, 50, 50]), 20, np.random.default_rng(0)).tolist() \
        == [2, 6, 6, 6]


@pytest.mark.parametrize("seed", range(20))
def test_water_filling_keeps_the_rest_within_one(seed):
    # share 2 each with remainder 2: the saturated class of 1 frees one more, total 10
    q = balanced_quotas(np.array([1, 100, 100, 100]), 10, np.random.default_rng(seed))
    assert q.tolist() == [1, 3, 3, 3]
    q = balanced_quotas(np.array([100, 0, 3, 100, 1]), 30, np.random.default_rng(seed))
    assert q[1] == 0 and q[2] == 3 and q[4] == 1 and sorted(q[[0, 3]].tolist()) == [13, 13]


def test_all_samples_and_empty_classes():
    labels = np.array([0, 0, 2, 2, 2, 5])  # classes 1, 3, 4 have no samples
    c = counts(labelled(labels), 6)
    assert c.tolist() == [2, 0, 3, 0, 0, 1]
    with pytest.raises(ValueError):
        balanced_quotas(np.array([1, 2]), 4, np.random.default_rng(0))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=12).filter(lambda s: sum(s) > 0),
       st.data())
def test_balanced_quotas_property(sizes, data):
    sizes = np.array(sizes)
    budget = data.draw(st.integers(0, int(sizes.sum())))
    q = balanced_quotas(sizes, budget, np.random.default_rng(data.draw(st.integers(0, 99))))
    assert q.sum() == budget and np.all(q >= 0) and np.all(q <= sizes)
    # max-min fair: a class short of its size is within one of the largest quota
    open_ = q < sizes
    assert not open_.any() or q[open_].min() >= q.max() - 1
