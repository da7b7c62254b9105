"""Forgetting, EL2N and AUM selectors: orientation, hand-worked rankings, tie-breaking."""

from __future__ import annotations

import numpy as np
import pytest

from coretune.selectors import (
    HIGHER_IS_HARDER,
    MissingArtifactError,
    SelectionContext,
    SelectorArgumentError,
    get_selector,
    select,
)
from coretune.selectors.difficulty import rank_by_difficulty

DIFFICULTY = ("forgetting", "el2n", "aum")


@pytest.mark.parametrize("name,raw,hardest,easiest", [
    ("forgetting", [0, 5, 2, 9, 1], [1, 3], [0, 4]),  # most / least forgotten
    ("el2n", [0.1, 0.8, 0.5, 0.9, 0.0], [1, 3], [0, 4]),  # largest / smallest error norm
    ("aum", [3.0, -2.0, 1.0, -5.0, 4.0], [1, 3], [0, 4]),  # LOWEST / highest margin
])
def test_hand_worked(name, raw, hardest, easiest):
    ctx = SelectionContext(5, 2, 0, scores_={name: np.array(raw, dtype=float)})
    assert select(name, ctx, 2).indices.tolist() == hardest
    assert select(name, ctx, 2, keep="hardest").indices.tolist() == hardest
    assert select(name, ctx, 2, keep="easiest").indices.tolist() == easiest
    assert select(name, ctx, 1).indices.tolist() == [3]  # the single hardest


def test_aum_keeps_lowest_raw_values_when_hardest():
    aum = np.array([0.3, -1.2, 2.5, 0.0, -0.4, 1.1])
    ctx = SelectionContext(6, 2, 0, scores_={"aum": aum})
    assert not HIGHER_IS_HARDER["aum"]
    assert sorted(aum[select("aum", ctx, 3).indices]) == [-1.2, -0.4, 0.0]
    assert sorted(aum[select("aum", ctx, 3, keep="easiest").indices]) == [0.3, 1.1, 2.5]


def test_each_selector_reads_its_own_score():
    # three scores ranking the samples differently; each selector follows its own
    scores = {"forgetting": np.array([4.0, 0, 0, 0]), "el2n": np.array([0, 0.9, 0, 0]),
              "aum": np.array([1.0, 1, -3, 1])}
    ctx = SelectionContext(4, 2, 0, scores_=scores)
    assert [select(n, ctx, 1).indices.item() for n in DIFFICULTY] == [0, 1, 2]


@pytest.mark.parametrize("name", DIFFICULTY)
def test_registration(name):
    info = get_selector(name)
    assert info.needs({}) == {"scores"} and not info.label_free
    assert list(info.parameters()) == ["keep"] and info.parameters()["keep"].default == "hardest"
    assert any(year in info.paper for year in ("2019", "2020", "2021"))


@pytest.mark.parametrize("name", DIFFICULTY)
def test_keep_validated_and_score_required(name):
    ctx = SelectionContext(3, 2, 0, scores_={name: np.array([1.0, 2.0, 3.0])})
    with pytest.raises(SelectorArgumentError, match="argument .keep. should be .hardest."):
        select(name, ctx, 2, keep="median")
    other = next(s for s in DIFFICULTY if s != name)
    with pytest.raises(MissingArtifactError, match=name):
        select(name, SelectionContext(3, 2, 0, scores_={other: np.ones(3)}), 2)


def test_ties_broken_at_random_but_reproducibly():
    d = np.array([5.0, 1, 1, 1, 1, 1, 1, 0])
    picks = {tuple(rank_by_difficulty(d, 3, "hardest", np.random.default_rng(s)))
             for s in range(20)}
    assert all(p[0] == 0 and set(p[1:]) <= {1, 2, 3, 4, 5, 6} for p in picks)
    assert len(picks) > 5
    again = rank_by_difficulty(d, 3, "hardest", np.random.default_rng(7))
    assert np.array_equal(again, rank_by_difficulty(d, 3, "hardest", np.random.default_rng(7)))
    easiest = rank_by_difficulty(d, 2, "easiest", np.random.default_rng(0))
    assert easiest[0] == 7 and 1 <= easiest[1] <= 6


def test_rank_by_difficulty_orders_whole_ranking_and_rejects_nan():
    d = np.array([0.2, 0.9, 0.1, 0.5])
    assert rank_by_difficulty(d, 4, "hardest", np.random.default_rng(0)).tolist() == [1, 3, 0, 2]
    assert rank_by_difficulty(d, 4, "easiest", np.random.default_rng(0)).tolist() == [2, 0, 3, 1]
    with pytest.raises(ValueError, match="not finite"):
        rank_by_difficulty(np.array([0.1, np.nan]), 1, "hardest", np.random.default_rng(0))
