"""CAD-Prune (Hard Truths, Sec. 5): the window maths worked by hand, the J/W/R defaults,
per-class selection of the most (or least) uncertain, and the proxy it declares."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coretune.selectors import SelectionContext, SelectorArgumentError, get_selector, select
from coretune.selectors.base import proxy_recipe
from coretune.selectors.compute_aware import (
    CheckpointScores,
    cad_proxy,
    cad_scores,
    default_points,
    resolve_window,
)
from coretune.spec import BudgetSpec, DataSpec, DynamicsSpec, OptimizerSpec, TrialSpec

#: R = 5 points of two samples; the last point (index 4) must never enter a window
TRAJECTORY = np.array([[9.0, 0.0],
                       [1.0, 0.0],
                       [3.0, 4.0],
                       [5.0, 0.0],
                       [100.0, 7.0]])


def test_last_two_windows_of_two_points_by_hand():
    # J = 2, W = 2, R = 5: windows k = R−J−W … R−J−1 = 1, 2 → (S1, S2) and (S2, S3)
    # sample 0: std(1, 3) = √2, std(3, 5) = √2 → CAD √2
    # sample 1: std(0, 4) = √8, std(4, 0) = √8 → CAD 2√2
    assert cad_scores(TRAJECTORY, 2, 2) == pytest.approx([math.sqrt(2), 2 * math.sqrt(2)])


def test_one_window_of_three_points_by_hand():
    # J = 3, W = 1: window k = 1 → (S1, S2, S3)
    # sample 0: (1, 3, 5), mean 3, Σ(dev²) = 8, /(J − 1) = 4 → 2
    # sample 1: (0, 4, 0), mean 4/3, Σ(dev²) = 16/9 + 64/9 + 16/9 = 32/3, /2 → √(16/3)
    assert cad_scores(TRAJECTORY, 3, 1) == pytest.approx([2.0, 4 / math.sqrt(3)])


def test_the_final_point_never_counts_and_windows_need_room():
    moved = TRAJECTORY.copy()
    moved[-1] = [-50.0, 3.0]
    assert cad_scores(moved, 2, 2) == pytest.approx(cad_scores(TRAJECTORY, 2, 2))
    assert cad_scores(moved, 4, 1) == pytest.approx(cad_scores(TRAJECTORY, 4, 1))
    with pytest.raises(ValueError, match="J \\+ W <= R"):
        cad_scores(TRAJECTORY, 4, 2)
    with pytest.raises(ValueError):
        cad_scores(TRAJECTORY, 1, 2)  # a std over one point


def test_windows_agree_with_a_loop_over_the_paper_formula():
    rng = np.random.default_rng(0)
    s = rng.random((12, 40))
    for j, w in [(6, 2), (10, 2), (2, 5), (3, 9)]:
        u = [s[k:k + j].std(axis=0, ddof=1) for k in range(12 - j - w, 12 - j)]
        assert cad_scores(s, j, w) == pytest.approx(np.mean(u, axis=0))


def test_defaults_r_j_w():
    n = 1000
    assert default_points(3 * n, n) == 8  # R = max(8, ⌈K⌉)
    assert default_points(n // 2, n) == 8  # K = 0.5 epochs: still 8 points
    assert default_points(30 * n, n) == 30  # one point per epoch at K = 30
    assert default_points(30 * n + 1, n) == 31  # ⌈K⌉
    assert resolve_window(8, None, 2) == 6  # the paper's J = 6 at W = 2
    assert resolve_window(30, None, 2) == 6
    assert resolve_window(7, None, 2) == 5  # J = min(6, R − W)
    assert resolve_window(7, 3, 4) == 3
    with pytest.raises(SelectorArgumentError, match="J \\+ W <= R = 7"):
        resolve_window(7, 6, 2)
    with pytest.raises(SelectorArgumentError):
        resolve_window(3, None, 2)  # J = 1
    info = get_selector("cad_prune")
    assert info.arguments.defaults == {"score": "p_true", "points": None, "window": None,
                                       "last_windows": 2, "keep": "highest"}
    assert info.balanced_default and info.needs({}) == {"checkpoint_scores", "labels"}


def test_argument_combinations_that_cannot_fit_are_refused_before_training():
    info = get_selector("cad_prune")
    info.validate_args({"points": 8, "window": 6, "last_windows": 2})
    for bad in ({"points": 8, "window": 7}, {"points": 3}, {"window": 1},
                {"last_windows": 0}, {"score": "aum"}, {"keep": "hardest"}):
        with pytest.raises(SelectorArgumentError):
            info.validate_args(bad)


def _context(seed: int = 0) -> tuple[SelectionContext, np.ndarray, np.ndarray]:
    """Two classes of 30; p_y trajectories whose late windows swing by a known amount."""
    rng = np.random.default_rng(seed)
    n, r = 60, 10
    labels = np.repeat([0, 1], 30)
    amplitude = rng.permutation(n) / n  # distinct per sample
    sign = np.where(np.arange(r) % 2 == 0, 1.0, -1.0)[:, None]
    p_true = np.clip(0.5 + 0.4 * amplitude[None] * sign, 0, 1)
    el2n = np.clip(0.3 + 0.2 * (1 - amplitude)[None] * sign, 0, 2)  # the reverse order
    scores = CheckpointScores(p_true.astype(np.float32), el2n.astype(np.float32),
                              np.arange(1, r + 1) * 100)
    return (SelectionContext.from_needs(n, 2, 0, {"labels": labels,
                                                  "checkpoint_scores": scores}),
            labels, amplitude)


def test_keeps_the_most_uncertain_per_class():
    ctx, labels, amplitude = _context()
    idx = select("cad_prune", ctx, 10).indices
    assert np.bincount(labels[idx]).tolist() == [5, 5]
    for c in (0, 1):
        members = np.flatnonzero(labels == c)
        top = members[np.argsort(-amplitude[members])[:5]]
        assert set(idx[labels[idx] == c]) == set(top)
    lowest = select("cad_prune", ctx, 10, keep="lowest").indices
    assert set(lowest).isdisjoint(idx)
    # EL2N swings the other way round here: its top CAD is p_y's bottom
    assert set(select("cad_prune", ctx, 10, score="el2n").indices) == set(lowest)


def test_the_scores_subset_keeps_every_point():
    ctx, _, _ = _context()
    scores = ctx.artifact("checkpoint_scores")
    part = scores.subset(np.array([3, 0]))
    assert part.p_true.shape == (10, 2) and part.points == 10
    assert part.el2n[:, 0].tolist() == scores.el2n[:, 3].tolist()
    with pytest.raises(RuntimeError, match="R = 8"):
        select("cad_prune", ctx, 10, points=8)


def _trial(**changes) -> TrialSpec:
    fields = {"sweep": "s", "dataset": DataSpec(name="digits"), "arch": "mlp",
              "selector": "cad_prune", "ratio": 0.1, "seed": 0,
              "optimizer": OptimizerSpec(lr=0.05, batch_size=32),
              "budget": BudgetSpec(unit="epochs", value=30, max_reports=5)}
    return TrialSpec(**{**fields, **changes})


def test_the_proxy_is_the_students_compute_at_a_fixed_seed():
    trial = _trial()
    proxy = cad_proxy(trial)
    assert proxy.arch == "mlp" and proxy.seed == 0
    assert proxy.optimizer == trial.optimizer and proxy.augment == trial.augment
    assert proxy.budget == BudgetSpec(unit="epochs", value=30, max_reports=1)
    assert proxy_recipe(trial) == proxy
    assert proxy_recipe(_trial(seed=7)) == proxy  # not the student's seed
    assert proxy_recipe(_trial(budget=BudgetSpec(value=10))) != proxy
    dyn = DynamicsSpec(arch="small_cnn", seed=3)
    from_dynamics = cad_proxy(_trial(dynamics=dyn))
    assert from_dynamics.arch == "small_cnn" and from_dynamics.seed == 3
    tuned = proxy_recipe(_trial(selector_proxy={"arch": "small_cnn", "seed": 5}))
    assert tuned.arch == "small_cnn" and tuned.seed == 5 and tuned.budget == proxy.budget
