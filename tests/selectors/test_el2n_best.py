"""EL2N-Best: the window over the EL2N ranking worked by hand, per class, with a fixed
offset or the offset search's choice, and the arguments it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from coretune.selectors import SelectionContext, SelectorArgumentError, get_selector, select
from coretune.selectors.el2n_best import el2n_window

#: hardest first: 0 (.9), 5 (.8), 3 (.7), 7 (.6), 2 (.5), 8 (.4), 4 (.3), 6 (.2), 1 (.1), 9 (0)
EL2N = np.array([0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4, 0.0])


@pytest.mark.parametrize(("offset", "budget", "expected"), [
    (0.0, 3, [0, 5, 3]),  # no skip: the hardest three
    (0.2, 3, [3, 7, 2]),  # skip ⌊0.2·10⌋ = 2
    (0.25, 3, [3, 7, 2]),  # ⌊2.5⌋ = 2
    (0.5, 4, [8, 4, 6, 1]),  # skip 5
    (0.9, 3, [6, 1, 9]),  # skip ⌊9⌋ capped at 10 − 3 = 7: the easiest three
    (0.99, 10, list(range(10))),  # budget = n: everything
])
def test_the_window_by_hand(offset, budget, expected):
    got = el2n_window(EL2N, budget, offset, np.random.default_rng(0))
    assert got.tolist() == expected if budget < 10 else sorted(got.tolist()) == expected


def _context(extras: dict | None = None) -> SelectionContext:
    labels = np.array([0, 1] * 10)
    el2n = np.concatenate([EL2N, EL2N[::-1]])  # class 0: even positions, class 1: odd
    return SelectionContext.from_needs(20, 2, 0, {"labels": labels, "scores": {"el2n": el2n},
                                                  **(extras or {})})


def test_per_class_by_default_and_the_whole_set_when_asked():
    ctx = _context()
    el2n, labels = ctx.score("el2n"), ctx.labels
    idx = select("el2n_best", ctx, 6, offset=0.2).indices
    for c in (0, 1):  # 10 per class, 3 each: skip ⌊0.2·10⌋ = 2, keep ranks 2, 3, 4
        members = np.flatnonzero(labels == c)
        ranked = members[np.argsort(-el2n[members], kind="stable")]
        assert sorted(idx[labels[idx] == c]) == sorted(ranked[2:5])
    whole = select("el2n_best", ctx, 6, offset=0.2, class_balanced=False).indices
    ranked = np.argsort(-el2n, kind="stable")  # ties between the classes: equal values
    assert sorted(el2n[whole]) == sorted(el2n[ranked[4:10]])  # skip ⌊0.2·20⌋ = 4


def test_auto_takes_the_searched_offset():
    ctx = _context({"offset_search": 0.5})
    assert np.array_equal(select("el2n_best", ctx, 6).indices,
                          select("el2n_best", _context(), 6, offset=0.5).indices)


def test_needs_and_arguments():
    info = get_selector("el2n_best")
    assert info.needs({}) == {"scores", "offset_search", "labels"}
    assert info.needs({"offset": 0.3, "class_balanced": False}) == {"scores"}
    assert info.uses == ("beta_search",) and info.balanced_default
    info.validate_args({"offset": "auto", "beta_grid": [0.0, 0.5], "search_scheduler": "fifo",
                        "score": "el2n"})
    for bad in ({"offset": 1.0}, {"offset": -0.1}, {"offset": "best"}, {"score": "aum"},
                {"beta_grid": [1.0]}):
        with pytest.raises(SelectorArgumentError):
            info.validate_args(bad)
