"""Gradient embeddings, CRAIG and GradMatch against references that are not the code under
test: autograd per-sample gradients, brute-force assignment, scipy's NNLS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from coretune.selectors import SelectionContext, select
from coretune.selectors.gradient import medoid_weights, nnls_gram, omp_nonneg
from coretune.selectors.proxies import GradEmbedding
from coretune.selectors.submodular import DenseKernel


def autograd_last_layer(bias: bool, n: int = 12, d: int = 5, k: int = 4, seed: int = 0):
    """Per-sample gradients of CE w.r.t. the head of a tiny MLP, one backward per sample."""
    torch.manual_seed(seed)
    body = torch.nn.Sequential(torch.nn.Linear(3, d), torch.nn.Tanh())
    head = torch.nn.Linear(d, k, bias=bias)
    x, y = torch.randn(n, 3), torch.randint(0, k, (n,))
    grads = []
    for i in range(n):  # the reference loop the closed form replaces
        head.zero_grad()
        torch.nn.functional.cross_entropy(head(body(x[i:i + 1])), y[i:i + 1]).backward()
        parts = [head.bias.grad.clone()] if bias else []
        grads.append(torch.cat(parts + [head.weight.grad.flatten().clone()]))
    with torch.no_grad():
        h = body(x)
        p = torch.softmax(head(h), dim=1)
    errors = p.clone()
    errors[torch.arange(n), y] -= 1.0
    return torch.stack(grads).double().numpy(), GradEmbedding(errors.numpy(), h.numpy(), bias)


@pytest.mark.parametrize("bias", [True, False])
def test_closed_form_embedding_equals_autograd(bias):
    ref, g = autograd_last_layer(bias)
    assert np.allclose(g.dense(), ref, atol=1e-6)
    assert np.allclose(g.norms(), np.linalg.norm(ref, axis=1), atol=1e-6)
    assert np.allclose(g.gram(), ref @ ref.T, atol=1e-6)
    sq = ((ref[:, None] - ref[None]) ** 2).sum(-1)
    assert np.allclose(g.sq_distances(), sq, atol=1e-6)
    rows, cols = np.array([0, 3, 5]), np.array([1, 2])
    assert np.allclose(g.gram(rows, cols), ref[rows] @ ref[cols].T, atol=1e-6)
    assert g.dim == ref.shape[1]


def test_tensor_sketch_inner_products_are_unbiased():
    ref, g = autograd_last_layer(True, n=6, d=6, k=5)
    est = np.mean([g.sketch(512, seed=s) @ g.sketch(512, seed=s).T for s in range(60)], axis=0)
    exact = ref @ ref.T
    assert np.abs(est - exact).max() < 0.1 * np.abs(exact).max()


def test_medoid_weights_count_nearest_medoids_brute_force():
    rng = np.random.default_rng(1)
    sim = rng.random((30, 30))
    sim = (sim + sim.T) / 2
    chosen = np.array([4, 17, 9])
    w = medoid_weights(DenseKernel(sim), chosen, None)
    brute = np.zeros(3)
    for i in range(30):
        brute[int(np.argmax([sim[i, c] for c in chosen]))] += 1
    assert w.tolist() == brute.tolist() and w.sum() == 30


def test_craig_weights_sum_to_the_class_sizes():
    _, g = autograd_last_layer(True, n=40)
    labels = np.arange(40) % 4
    ctx = SelectionContext.from_needs(40, 4, 0, {"grad_embed": g, "labels": labels})
    sel = select("craig", ctx, 8)
    assert sel.weights is not None and sel.weights.sum() == 40
    for c in range(4):  # per class (the default): each class's weights cover its members
        assert sel.weights[labels[sel.indices] == c].sum() == 10


@pytest.mark.parametrize("seed", range(5))
def test_gram_nnls_equals_scipy_on_the_augmented_system(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(20, 9))
    t = a[:, 4:].sum(axis=1) - a[:, :4].sum(axis=1) + 0.1 * rng.normal(size=20)
    lam = 0.3
    ref = nnls(np.vstack([a, np.sqrt(lam) * np.eye(9)]), np.concatenate([t, np.zeros(9)]))[0]
    q, b = a.T @ a + lam * np.eye(9), a.T @ t
    assert np.allclose(nnls_gram(q, b), ref, atol=1e-8)
    # warm starts from any feasible point reach the same optimum
    assert np.allclose(nnls_gram(q, b, rng.random(9)), ref, atol=1e-8)
    assert np.allclose(nnls_gram(q, b, np.where(ref > 0, ref, 0.0) + 0.1), ref, atol=1e-8)
    assert (ref == 0).any()  # the constraint is active somewhere: a real NNLS case


def test_omp_against_least_squares_reference():
    rng = np.random.default_rng(3)
    a = np.abs(rng.normal(size=(15, 8)))  # columns are the gradients
    gram = a.T @ a
    target = a.sum(axis=1)
    chosen, w = omp_nonneg(gram, 8, lam=0.0, tol=0.0)
    # the first pick is the column most correlated with the target (explicit vectors)
    assert chosen[0] == int(np.argmax(a.T @ target))
    # the weights are the non-negative least-squares fit on the support
    ref = nnls(a[:, chosen], target)[0]
    assert np.allclose(w, ref, atol=1e-6)
    # with every column available the target (all ones) is matched exactly
    assert np.linalg.norm(a[:, chosen] @ w - target) <= 1e-6 * np.linalg.norm(target)


def test_gradmatch_weights_are_non_negative_and_budget_exact():
    _, g = autograd_last_layer(True, n=60)
    labels = np.arange(60) % 3
    ctx = SelectionContext.from_needs(60, 3, 0, {"grad_embed": g, "labels": labels})
    for budget in (3, 20, 60):
        sel = select("gradmatch", ctx, budget)
        assert sel.indices.size == budget and (sel.weights >= 0).all()
