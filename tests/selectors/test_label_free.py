"""Label-free selectors' algorithms: ZCore against the published per-draw loop,
prototypicality and label-free D² on hand-worked inputs."""

from __future__ import annotations

import numpy as np
import pytest

from coretune.selectors import SelectionContext, select
from coretune.selectors.prototypicality import prototype_distances
from coretune.selectors.zcore import zcore_draws, zcore_raw_scores, zcore_scores


def published_zcore(x: np.ndarray, draws, redund_nn: int, redund_exp: float,
                    normalise: bool = True) -> np.ndarray:
    """voxel51/zcore's ``sample_score``, one draw at a time over all N embeddings, then its
    min–max normalisation (written from the published loop, not from our module)."""
    scores = np.zeros(len(x))
    for dims, points in draws:
        for sample in points:
            embed_dist = np.abs(x[:, dims] - sample).sum(axis=1)
            idx = int(np.argmin(embed_dist))
            scores[idx] += 1
            nn_dist = np.abs(x[:, dims] - x[idx, dims]).sum(axis=1)
            nn = np.argsort(nn_dist, kind="stable")
            nn = nn[nn != idx]  # the covered sample itself
            if nn_dist[nn[0]] == 0:
                scores[nn[0]] -= 1
            else:
                nn = nn[:redund_nn]
                penalty = 1 / nn_dist[nn] ** redund_exp
                scores[nn] -= penalty / penalty.sum()
    if not normalise:
        return scores
    return (scores - scores.min()) / (scores.max() - scores.min())


@pytest.mark.parametrize("redund_nn,redund_exp,batch", [(20, 4.0, 7), (5, 1.0, 100),
                                                        (60, 2.0, 1)])
def test_zcore_equals_the_published_per_draw_loop(redund_nn, redund_exp, batch):
    x = np.random.default_rng(0).normal(size=(80, 6))
    ours = zcore_scores(x, np.random.default_rng(3), 150, 2, redund_nn, redund_exp, batch)
    draws = list(zcore_draws(x, np.random.default_rng(3), 150, 2, batch))
    assert ours == pytest.approx(published_zcore(x, draws, redund_nn, redund_exp), abs=1e-9)


def test_zcore_exact_duplicates_take_the_whole_penalty():
    base = np.random.default_rng(1).normal(size=(30, 3))
    x = np.vstack([base, base[:5]])  # samples 30..34 duplicate 0..4
    ours = zcore_raw_scores(x, np.random.default_rng(5), 200, 3, 10, 4.0, 50)
    draws = list(zcore_draws(x, np.random.default_rng(5), 200, 3, 50))
    ref = published_zcore(x, draws, 10, 4.0, normalise=False)
    # which of two copies is "covered" and which "redundant" is a tie: compare pair sums
    assert ours[5:30] == pytest.approx(ref[5:30], abs=1e-9)
    assert ours[:5] + ours[30:] == pytest.approx(ref[:5] + ref[30:], abs=1e-9)
    assert (ref[:5] + ref[30:] != 0).any()  # duplicates were covered, so this is a test


def test_prototypicality_distances_and_orientation():
    # two tight clusters on the unit circle and one sample between them
    x = np.array([[1.0, 0.0], [1.0, 0.01], [1.0, -0.01],
                  [0.0, 1.0], [0.01, 1.0], [-0.01, 1.0], [1.0, 1.0]])
    d = prototype_distances(x, 2, 0)
    assert np.argmax(d) == 6 and d[:6].max() < 0.05 < d[6]
    ctx = SelectionContext.from_needs(7, 2, 0, {"embeddings": x})
    assert select("prototypicality", ctx, 1).indices.tolist() == [6]
    assert 6 not in select("prototypicality", ctx, 4, keep="easiest").indices


def test_label_free_d2_spreads_picks_over_the_graph():
    # two disconnected triangles of equal density, and one isolated pair
    nbr = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4], [7, -1], [6, -1]])
    dist = np.where(nbr >= 0, 0.5, np.inf)
    ctx = SelectionContext.from_needs(8, 1, 0, {"knn": (nbr, dist)})
    picked = select("d2_label_free", ctx, 2).indices
    # the densest nodes are the triangles'; the reverse pass lowers the first pick's
    # neighbours, so the second pick comes from the other triangle
    assert sorted(picked // 3) == [0, 1]
