"""NFG (Mohanty et al., TMLR 2025): the factorised neighbour counts against per-sample
autograd gradients and explicit cosine matrices, a hand-worked case, blocking, the Borda
ranking against a port of the official ranking, the class budgets and the selector."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from coretune.selectors import SelectionContext, select
from coretune.selectors.gradient_neighbours import (
    NeighbourCounts,
    borda_rank_sums,
    class_neighbour_counts,
    descending_ranks,
    keep_lowest_per_class,
    loss_gradient_errors,
    neighbour_counts,
    proportional_class_budgets,
)
from coretune.selectors.nfg import nfg_proxy
from coretune.spec import DataSpec, DynamicsSpec, TrialSpec


def autograd_weight_gradients(n: int = 60, d: int = 6, k: int = 4, seed: int = 0):
    """∂CE/∂W of a tiny model's head (weight only, bias excluded as in the official code),
    one backward pass per sample; with its errors p − onehot(y), features and labels."""
    torch.manual_seed(seed)
    body = torch.nn.Sequential(torch.nn.Linear(3, d), torch.nn.ReLU()).double()
    head = torch.nn.Linear(d, k).double()
    x, y = torch.randn(n, 3, dtype=torch.float64), torch.randint(0, k, (n,))
    grads = []
    for i in range(n):  # the reference loop the factorisation replaces
        head.zero_grad()
        torch.nn.functional.cross_entropy(head(body(x[i:i + 1])), y[i:i + 1]).backward()
        grads.append(head.weight.grad.flatten().clone())
    with torch.no_grad():
        h = body(x)
        logits = head(h)
    return torch.stack(grads).numpy(), loss_gradient_errors(logits, y), h, y


def explicit_counts(grads: np.ndarray, labels: np.ndarray, radius: float) -> np.ndarray:
    """n(i) from an explicit cosine matrix per class (zero vectors: cosine 0, self out)."""
    counts = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        g = grads[members]
        norms = np.linalg.norm(g, axis=1)
        cosine = (g @ g.T) / np.maximum(np.outer(norms, norms), 1e-300)
        np.fill_diagonal(cosine, -np.inf)
        counts[members] = (cosine > 1.0 - radius).sum(axis=1)
    return counts


@pytest.mark.parametrize("radius", [0.02, 0.1, 0.2, 0.5, 1.0, 1.5])
def test_factorised_counts_equal_counts_of_autograd_gradients(radius):
    grads, errors, h, y = autograd_weight_gradients()
    ref = explicit_counts(grads, y.numpy(), radius)
    assert neighbour_counts(errors, h, y, radius).numpy().tolist() == ref.tolist()


def test_the_autograd_case_is_not_degenerate():
    grads, errors, h, y = autograd_weight_gradients()
    by_radius = [explicit_counts(grads, y.numpy(), r) for r in (0.02, 0.2, 1.0)]
    assert all(len(np.unique(c)) > 3 for c in by_radius)
    assert by_radius[0].sum() < by_radius[1].sum() < by_radius[2].sum()


def test_hand_worked_counts():
    """Class 0 has identical error directions, so cos g = cos h: h0 = h3 = (1, 0),
    h1 = (1, 1), h2 = (0, 1) (cosines 1, 0.707, 0); sample 4 has the opposite error
    direction (cos −1 with the others); sample 5 a zero error (cos 0). Samples 6 and 7
    (class 1) are parallel; class 2 holds one sample. The rows are then shuffled, so the
    classes are interleaved."""
    e = torch.tensor([[1.0, 0.0]] * 4 + [[-1.0, 0.0], [0.0, 0.0]] + [[0.0, 2.0]] * 3)
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0],
                      [3.0, 1.0], [6.0, 2.0], [1.0, 1.0]])
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2])
    expected = {
        0.2: [1, 0, 0, 1, 0, 0, 1, 1, 0],
        0.3: [2, 3, 1, 2, 0, 0, 1, 1, 0],
        # cos > −0.5: all but the opposite pairs (cos(h2, h4) = 0 counts); the zero vector
        # (cos 0) is everybody's neighbour, as with torchmetrics' zero-row convention
        1.5: [4, 4, 5, 4, 2, 5, 1, 1, 0]}
    shuffle = torch.tensor([8, 6, 0, 1, 7, 2, 3, 4, 5])
    for radius, counts in expected.items():
        assert neighbour_counts(e, h, y, radius).tolist() == counts
        shuffled = neighbour_counts(e[shuffle], h[shuffle], y[shuffle], radius)
        assert shuffled.tolist() == torch.tensor(counts)[shuffle].tolist()


def test_the_threshold_is_strict():
    """cos = 0.6 exactly, (1, 0)·(3, 4)/5: no neighbour at r = 0.4, one just above."""
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    h = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    assert class_neighbour_counts(e, h, 0.4).tolist() == [0, 0]
    assert class_neighbour_counts(e, h, 0.4 + 1e-9).tolist() == [1, 1]


def test_blocked_equals_unblocked():
    gen = torch.Generator().manual_seed(3)
    n, k, d = 257, 7, 9
    y = torch.randint(0, 3, (n,), generator=gen)
    errors = loss_gradient_errors(torch.randn(n, k, generator=gen), y % k)
    h = torch.relu(torch.randn(n, d, generator=gen) + 0.5)
    whole = neighbour_counts(errors, h, y, 0.3, block=10_000)
    assert whole.sum() > 0
    for block in (1, 7, 64, 100):
        assert torch.equal(neighbour_counts(errors, h, y, 0.3, block=block), whole)


def test_float32_inputs_and_bad_arguments():
    e, h = torch.ones(3, 2), torch.ones(3, 4)
    assert class_neighbour_counts(e, h, 0.2).tolist() == [2, 2, 2]
    for bad in (0.0, 2.0, -0.1):
        with pytest.raises(ValueError, match="radius"):
            class_neighbour_counts(e, h, bad)
    with pytest.raises(ValueError, match="block"):
        class_neighbour_counts(e, h, 0.2, block=0)


def official_rank_sums(counts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A line-by-line port of the official ranking (``get_ranking`` and its loop): per
    class and checkpoint ``np.argsort(counts)[::-1]``, the position is the rank, summed."""
    sums = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        for t in range(counts.shape[0]):
            ranking = np.argsort(counts[t, members])[::-1]
            for rank, position in enumerate(ranking):
                sums[members[position]] += rank
    return sums


def test_borda_sums_equal_the_official_ranking_without_ties():
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat([0, 1, 2, 5], [9, 12, 1, 20]))
    counts = np.zeros((10, labels.size), dtype=np.int32)
    for c in np.unique(labels):  # distinct counts within each class and checkpoint
        members = np.flatnonzero(labels == c)
        for t in range(10):
            counts[t, members] = rng.permutation(members.size) * 3 + t
    sums = borda_rank_sums(counts, labels)
    assert sums.tolist() == official_rank_sums(counts, labels).tolist()
    assert sums[labels == 2].tolist() == [0]


def test_ties_go_to_the_lower_index():
    """Counts (5, 2, 5, 0, 2) in one class at one checkpoint: 0 and 2 tie at the top, 1
    and 4 below; the lower index ranks first."""
    counts = np.array([[5, 2, 5, 0, 2, 7]])
    labels = np.array([0, 0, 0, 0, 0, 1])
    assert descending_ranks(counts, labels).tolist() == [[0, 2, 1, 4, 3, 0]]
    two = np.array([[5, 2, 5, 0, 2, 7], [1, 1, 1, 1, 1, 0]])  # all tied: index order
    assert borda_rank_sums(two, labels).tolist() == [0, 3, 3, 7, 7, 0]
    # equal sums are kept lower index first: 1 and 2 tie at 3, so 1 is kept
    assert keep_lowest_per_class(np.array([0, 3, 3, 7, 7, 0]), labels, 3).tolist() == [0, 1, 5]


def test_kept_samples_are_the_lowest_sums_per_class():
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    sums = np.array([4, 9, 1, 2, 3, 8, 0, 5])
    # budget 4 over two classes of 4: 2 each; class 1 keeps 6 and 2, class 0 keeps 3 and 7
    assert keep_lowest_per_class(sums, labels, 4).tolist() == [2, 3, 6, 7]


def published(sizes: list[int], budget: int) -> list[int]:
    """k_c = max(1, round(f·n_c)) with Python's (banker's) round, f = budget / N exactly."""
    total = sum(sizes)
    return [max(1, round(Fraction(budget * n, total))) for n in sizes]


def test_budgets_round_half_to_even_with_a_minimum_of_one():
    assert published([25, 35, 15, 25], 10) == [2, 4, 2, 2]  # 2.5 3.5 1.5 2.5
    assert proportional_class_budgets(np.array([25, 35, 15, 25]), 10).tolist() == [2, 4, 2, 2]
    assert proportional_class_budgets(np.array([10, 30, 60]), 10).tolist() == [1, 3, 6]


def test_budget_fix_up_hits_the_total_exactly():
    # CIFAR-100 at 0.5 %: the published rule keeps 2 per class (200); 50 classes get a 3rd
    quotas = proportional_class_budgets(np.full(100, 500), 250)
    assert sum(published([500] * 100, 250)) == 200
    assert quotas.sum() == 250 and quotas[:50].tolist() == [3] * 50
    assert quotas[50:].tolist() == [2] * 50
    # 3.5 rounds to 4 (400): the higher classes give one back
    quotas = proportional_class_budgets(np.full(100, 500), 350)
    assert quotas[:50].tolist() == [4] * 50 and quotas[50:].tolist() == [3] * 50
    # the minimum of one: two tiny classes keep one each, the large class pays
    assert proportional_class_budgets(np.array([1000, 5, 5]), 10).tolist() == [8, 1, 1]
    # fewer kept than classes: no minimum, the lower classes first
    assert proportional_class_budgets(np.full(10, 100), 3).tolist() == [1, 1, 1] + [0] * 7


def test_budgets_on_random_class_sizes():
    rng = np.random.default_rng(1)
    for _ in range(200):
        sizes = rng.integers(1, 60, rng.integers(1, 30))
        budget = int(rng.integers(1, sizes.sum() + 1))
        quotas = proportional_class_budgets(sizes, budget)
        assert quotas.sum() == budget and (quotas <= sizes).all()
        if budget >= sizes.size:
            assert (quotas >= 1).all()
        rule = published(sizes.tolist(), budget)
        if sum(rule) == budget and all(r <= s for r, s in zip(rule, sizes, strict=True)):
            assert quotas.tolist() == rule  # the published rule is kept when it fits
    with pytest.raises(ValueError, match="budget"):
        proportional_class_budgets(np.array([3, 4]), 8)


def nfg_context(counts: np.ndarray, labels: np.ndarray, radius: float = 0.2
                ) -> SelectionContext:
    return SelectionContext.from_needs(labels.size, int(labels.max()) + 1, 0, {
        "labels": labels, "gradient_neighbours": NeighbourCounts(counts, labels, radius)})


def test_the_selector_keeps_the_most_neighboured_per_class():
    rng = np.random.default_rng(2)
    labels = rng.permutation(np.arange(300) % 3)
    counts = rng.integers(0, 50, (10, 300)).astype(np.int32)
    expected = keep_lowest_per_class(borda_rank_sums(counts, labels), labels, 30)
    picked = select("nfg", nfg_context(counts, labels), 30)
    assert picked.indices.tolist() == expected.tolist()
    assert np.bincount(labels[picked.indices]).tolist() == [10, 10, 10]
    # a sample with the most neighbours at every checkpoint is always kept
    counts[:, 7] = 99
    assert 7 in select("nfg", nfg_context(counts, labels), 3).indices
    balanced = select("nfg", nfg_context(counts, labels), 31, class_balanced=True)
    assert balanced.indices.size == 31
    with pytest.raises(ValueError, match="radius"):
        select("nfg", nfg_context(counts, labels), 30, radius=0.3)


def test_the_proxy_is_nfgs_recipe():
    trial = TrialSpec(sweep="s", dataset=DataSpec(name="digits"), arch="mlp",
                      selector="nfg", ratio=0.1, seed=5)
    proxy = nfg_proxy(trial)
    opt = proxy.optimizer
    assert (opt.name, opt.lr, opt.momentum, opt.nesterov, opt.weight_decay, opt.batch_size,
            opt.schedule) == ("sgd", 0.1, 0.0, False, 0.0, 32, "constant")
    assert (proxy.budget.unit, proxy.budget.value, proxy.budget.max_reports) == ("epochs", 10,
                                                                                10)
    assert proxy.arch == "mlp" and proxy.seed == 0 and not proxy.augment.active
    with_dynamics = trial.model_copy(update={"dynamics": DynamicsSpec(arch="small_cnn",
                                                                      seed=3)})
    assert (nfg_proxy(with_dynamics).arch, nfg_proxy(with_dynamics).seed) == ("small_cnn", 3)
