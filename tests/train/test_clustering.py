"""Pseudo-label metrics against scikit-learn and hand-worked values; TEMI against k-means."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_moons
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from coretune.selectors.neighbors import knn_graph
from coretune.train.clustering import clustering_metrics, kmeans, scan, temi
from coretune.train.evaluate import hungarian_accuracy


def test_hungarian_accuracy_hand_worked():
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    # clusters renamed (0→2, 1→0, 2→1) and one mistake: 7 of 8 under the best matching
    pred = np.array([2, 2, 2, 0, 0, 1, 1, 0])
    assert hungarian_accuracy(truth, pred) == pytest.approx(7 / 8)
    assert hungarian_accuracy(truth, (truth + 1) % 3) == 1.0
    # more clusters than classes: only one cluster per class counts
    assert hungarian_accuracy(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3])) == 0.5


def test_nmi_and_ari_are_scikit_learns():
    rng = np.random.default_rng(0)
    truth, pred = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
    m = clustering_metrics(truth, pred)
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(truth, pred))
    assert m["ari"] == pytest.approx(adjusted_rand_score(truth, pred))
    perfect = clustering_metrics(truth, (truth + 2) % 4)
    assert perfect == {"acc": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}


@pytest.fixture(scope="module")
def moons():
    """Two pairs of interleaved half-moons in 8-D: the k-NN graph separates all four
    (purity ≈ 1), k-means on the embeddings cannot (they are not convex)."""
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for pair in range(2):
        x, y = make_moons(200, noise=0.05, random_state=pair)
        xs.append(x + np.array([0, 3 * pair]))
        ys.append(y + 2 * pair)
    x, y = np.concatenate(xs), np.concatenate(ys)
    basis = np.linalg.qr(rng.normal(size=(8, 8)))[0][:2]
    emb = x @ basis * 0.3 + 1.0 + 0.01 * rng.normal(size=(len(x), 8))
    knn, _ = knn_graph(emb, 8, "cosine")
    assert (y[knn] == y[:, None]).mean() > 0.99
    return emb, knn, y


def test_temi_lowers_its_loss_and_beats_kmeans(moons):
    emb, knn, y = moons
    km, _, _ = kmeans(emb, 4)
    labels, record = temi(emb, knn, 4, heads=4, hidden=64, epochs=60, batch_size=50, lr=1e-3,
                          momentum=0.9)
    losses = record["loss_per_epoch"]
    assert losses[-1] < losses[0] - 0.1
    assert 0 <= record["head"] < 4 and labels.shape == y.shape
    acc_temi, acc_km = hungarian_accuracy(y, labels), hungarian_accuracy(y, km)
    assert acc_temi > acc_km + 0.03, (acc_temi, acc_km)


def test_scan_and_kmeans_are_deterministic_and_use_every_cluster(moons):
    emb, knn, _ = moons
    a, _ = scan(emb, knn, 4, heads=2, hidden=32, epochs=5, batch_size=50, lr=1e-3)
    b, _ = scan(emb, knn, 4, heads=2, hidden=32, epochs=5, batch_size=50, lr=1e-3)
    assert np.array_equal(a, b)
    km, centroids, _ = kmeans(emb, 4, seed=3)
    assert np.array_equal(km, kmeans(emb, 4, seed=3)[0]) and centroids.shape == (4, 8)
    assert np.unique(km).size == 4
