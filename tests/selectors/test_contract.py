"""The registry-wide selection contract, over every registered selector and its defaults:
exact budget, unique, in range, deterministic under its seed, class balance when asked,
from one sample per class to the whole set."""

from __future__ import annotations

import numpy as np
import pytest

from coretune.selectors import available_selectors, get_selector, select
from tests.selectors.conftest import CORESETS, SYNTHESIZERS, K, N, context_for

SUPERVISED = [n for n in CORESETS if not get_selector(n).label_free]


@pytest.mark.parametrize("name", CORESETS)
@pytest.mark.parametrize("budget", [1, K, 137, N - 1, N])
def test_exact_unique_in_range_and_deterministic(name, budget):
    a = select(name, context_for(name), budget)
    assert a.indices.dtype == np.int64 and a.indices.size == budget
    assert np.unique(a.indices).size == budget and 0 <= a.indices.min() <= a.indices.max() < N
    b = select(name, context_for(name), budget)
    assert np.array_equal(a.indices, b.indices)
    if a.weights is not None:
        assert np.isfinite(a.weights).all() and (a.weights >= 0).all()
        assert np.array_equal(a.weights, b.weights)


@pytest.mark.parametrize("name", SUPERVISED)
@pytest.mark.parametrize("budget", [K, 137, 250])
def test_class_balanced_when_asked(name, budget):
    args = {"class_balanced": True}
    ctx = context_for(name, args=args)
    idx = select(name, ctx, budget, **args).indices
    counts = np.bincount(ctx.labels[idx], minlength=K)
    assert counts.sum() == budget and counts.max() - counts.min() <= 1
    if budget == K:  # one sample per class
        assert (counts == 1).all()


@pytest.mark.parametrize("name", SUPERVISED)
def test_class_balanced_off_is_accepted_and_needs_no_labels_of_its_own(name):
    info = get_selector(name)
    off = info.needs({"class_balanced": False})
    on = info.needs({"class_balanced": True})
    assert "labels" in on and on - off <= {"labels"}
    assert select(name, context_for(name, args={"class_balanced": False}), 37,
                  class_balanced=False).indices.size == 37


@pytest.mark.parametrize("name", SYNTHESIZERS)
def test_synthetic_set_methods_are_not_selected_from(name):
    info = get_selector(name)
    assert info.paper and not info.label_free and "ipc" in str(
        list(__import__("inspect").signature(info.fn).parameters)[:2])
    with pytest.raises(ValueError, match="builds a synthetic set"):
        select(name, context_for("random"), 10)


def test_the_synthetic_set_methods_of_hard_truths_are_registered():
    assert {"rded", "ca2d", "from_file"} <= set(SYNTHESIZERS)


def test_every_method_of_the_soft_label_paper_is_registered_by_name():
    # Table 1 of the soft-label paper (13 methods), and Hard Truths' CAD-Prune and EL2N-Best
    paper = {"random", "craig", "forgetting", "gradmatch", "grand", "graph_cut",
             "facility_location", "moderate", "ccs", "d2", "dual", "cld", "nfg",
             "cad_prune", "el2n_best"}
    assert paper <= set(available_selectors())
    for name in available_selectors():
        assert get_selector(name).paper, name
