"""k-center greedy and herding against brute force; Moderate on a hand-worked example."""

from __future__ import annotations

import numpy as np

from coretune.selectors import SelectionContext, select
from coretune.selectors.geometry import (
    distance_to_class_median,
    herding_order,
    k_center_greedy,
    middle_band,
)


def test_k_center_greedy_equals_brute_force_farthest_first():
    x = np.random.default_rng(0).normal(size=(120, 7))
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    chosen = [5]
    for _ in range(19):  # the point whose nearest centre is farthest, from the full matrix
        chosen.append(int(np.argmax(dist[:, chosen].min(axis=1))))
    assert k_center_greedy(x, 20, 5).tolist() == chosen


def test_herding_equals_brute_force_mean_matching():
    x = np.random.default_rng(1).normal(size=(50, 4))
    mu = x.mean(axis=0)
    chosen: list[int] = []
    for _ in range(12):
        rest = [i for i in range(50) if i not in chosen]
        gaps = [np.linalg.norm(mu - x[chosen + [i]].mean(axis=0)) for i in rest]
        chosen.append(rest[int(np.argmin(gaps))])
    assert herding_order(x, 12).tolist() == chosen


def test_moderate_keeps_the_band_around_the_median_distance():
    # class 0 on a line: median 0, distances 0, 1, 2, 3, 4, 5, 6 (the median distance is 3)
    feats = np.array([[0.0], [1.0], [-2.0], [3.0], [-4.0], [5.0], [-6.0]])
    labels = np.zeros(7, dtype=np.int64)
    assert distance_to_class_median(feats, labels).tolist() == [0, 1, 2, 3, 4, 5, 6]
    ctx = SelectionContext.from_needs(7, 1, 0, {"features": feats, "labels": labels})
    assert select("moderate", ctx, 3).indices.tolist() == [2, 3, 4]
    assert select("moderate", ctx, 1).indices.tolist() == [3]
    assert middle_band(np.arange(10.0), 4, np.random.default_rng(0)).tolist() == [3, 4, 5, 6]


def test_moderate_uses_each_class_median():
    feats = np.array([[0.0], [1.0], [2.0], [100.0], [110.0], [120.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert distance_to_class_median(feats, labels).tolist() == [1, 0, 1, 10, 0, 10]
