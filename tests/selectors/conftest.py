"""A selection context holding every artifact a selector may need, for registry-wide tests."""

from __future__ import annotations

import numpy as np

import coretune.artifacts  # noqa: F401 - registers the synthetic-set methods too
from coretune.selectors import SelectionContext, available_selectors, get_selector
from coretune.selectors.compute_aware import CheckpointScores
from coretune.selectors.gradient_neighbours import NeighbourCounts
from coretune.selectors.proxies import GradEmbedding, TrainingOutputs

N, K = 500, 10
#: every registered method that selects a subset (the synthetic-set methods build images
#: and have a contract of their own, tests/artifacts/test_synthetic.py)
CORESETS = [n for n in available_selectors() if not get_selector(n).synthesizes]
SYNTHESIZERS = [n for n in available_selectors() if get_selector(n).synthesizes]


def full_context(seed: int = 0, n: int = N, k: int = K) -> SelectionContext:
    """Every artifact present: balanced labels, every score (forgetting has ties),
    embeddings, kNN, pseudo-labels, per-epoch outputs with validation losses, features,
    gradient embeddings, an external score file's scores, pseudo-label dynamics and a β*."""
    rng = np.random.default_rng(123)
    labels = rng.permutation(np.arange(n) % k)
    emb = rng.normal(size=(n, 8))
    sq = (emb * emb).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * emb @ emb.T, 0))
    np.fill_diagonal(dist, np.inf)
    knn = np.argsort(dist, axis=1)[:, :5]
    feats = (emb @ rng.normal(size=(8, 16)) + labels[:, None]).astype(np.float32)
    probs = rng.dirichlet(np.ones(k), size=n)
    errors = probs.copy()
    errors[np.arange(n), labels] -= 1.0
    epochs = 12
    p_true = np.clip(np.linspace(0.1, 0.9, epochs)[None, :, None]
                     + 0.1 * rng.normal(size=(2, epochs, n)), 0.0, 1.0).astype(np.float16)
    outputs = TrainingOutputs(p_true, rng.integers(0, k, (2, epochs, n)).astype(np.int16),
                              np.linspace(2.0, 0.5, epochs)[None].repeat(2, 0)
                              + 0.05 * rng.normal(size=(2, epochs)))
    own = np.random.default_rng(7)
    trajectory = own.random((10, n)).astype(np.float32)
    return SelectionContext.from_needs(n, k, seed, {
        "labels": labels,
        "scores": {"aum": rng.normal(size=n), "forgetting": rng.integers(0, 6, n).astype(float),
                   "el2n": rng.random(n), "grand": rng.random(n), "entropy": rng.random(n),
                   "least_confidence": rng.random(n), "margin": rng.random(n)},
        "embeddings": emb, "knn": (knn, np.take_along_axis(dist, knn, 1)),
        "pseudo_labels": rng.integers(0, k, n),
        "features": feats, "outputs": outputs,
        "grad_embed": GradEmbedding(errors.astype(np.float32), feats),
        "external_scores": rng.normal(size=n),
        "pseudo_scores": {"aum": rng.normal(size=n), "forgetting": rng.integers(0, 6, n)
                          .astype(float), "el2n": rng.random(n)},
        "beta_search": 0.2,
        # the proxy runs of NFG and CAD-Prune, from their own generator (the draws above
        # stay as they were)
        "gradient_neighbours": NeighbourCounts(
            own.integers(0, 30, (10, n)).astype(np.int32), labels, 0.2),
        "checkpoint_scores": CheckpointScores(trajectory, 1 - trajectory,
                                              np.arange(1, 11) * n),
        "offset_search": 0.3})


def default_args(name: str) -> dict:
    """Arguments under which a selector reads what ``full_context`` holds."""
    return {}


def context_for(name: str, seed: int = 0, args: dict | None = None) -> SelectionContext:
    """A context holding only what ``name`` declares under ``args`` (as the harness builds it)."""
    full, needs = full_context(seed), get_selector(name).needs(args)
    artifacts = {a: full.artifact(a) if a not in ("labels", "knn", "embeddings", "scores",
                                                   "pseudo_labels") else getattr(full, a + "_")
                 for a in needs}
    return SelectionContext.from_needs(N, K, seed, artifacts)
