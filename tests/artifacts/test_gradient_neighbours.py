"""The gradient_neighbours kind (NFG's proxy run and per-epoch counts) on real digits,
without Ray: its shape and metadata, the counts of the final checkpoint against explicit
per-sample autograd gradients of the model's head, its params and the store's view."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch

from coretune.artifacts.gradient_neighbours import (
    NeighbourCountRecorder,
    neighbour_counts_of,
    neighbour_params,
    record_neighbour_counts,
)
from coretune.artifacts.store import ArtifactStore
from coretune.artifacts.teacher import train_full
from coretune.selectors.nfg import nfg_proxy
from coretune.spec import AugmentSpec, BudgetSpec, DataSpec, DynamicsSpec, OptimizerSpec, TrialSpec
from coretune.train.data import load_dataset, to_device
from coretune.train.loop import Hooks
from coretune.train.models import classifier_layer

TINY = DynamicsSpec(arch="mlp", optimizer=OptimizerSpec(lr=0.1, momentum=0.0, nesterov=False,
                                                        weight_decay=0.0, batch_size=64,
                                                        schedule="constant"),
                    budget=BudgetSpec(unit="epochs", value=3, max_reports=3),
                    augment=AugmentSpec())


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_the_kind_builds_counts_per_epoch(digits):
    built = record_neighbour_counts(digits, TINY, radius=0.2)
    counts, labels = built.arrays["counts"], built.arrays["labels"]
    n = len(digits.train_y)
    assert counts.shape == (3, n) and counts.dtype == np.int32
    assert labels.tolist() == digits.train_y.tolist()
    class_sizes = np.bincount(labels)[labels]
    assert (counts >= 0).all() and (counts <= class_sizes - 1).all()
    assert counts.sum() > 0 and len(np.unique(counts[-1])) > 5
    meta = built.meta
    assert meta["epochs"] == 3 and meta["radius"] == 0.2 and len(meta["train_acc"]) == 3
    assert 0.5 < meta["train_acc"][-1] <= 1.0

    with tempfile.TemporaryDirectory() as root:
        art, _ = ArtifactStore(root).build_once("gradient-neighbours-test", lambda: built)
        view = neighbour_counts_of(art)
    assert np.array_equal(view.counts, counts) and view.radius == 0.2
    part = view.subset(np.array([4, 0]))
    assert part.counts.tolist() == counts[:, [4, 0]].tolist()


def test_final_counts_equal_explicit_autograd_gradients_of_the_model(digits):
    """The last checkpoint's counts of class 3 against ∂CE/∂W of the model's own head
    (eval mode, un-augmented inputs), one backward pass per sample, explicit cosines."""
    data = to_device(digits)
    epochs = 2
    rec = NeighbourCountRecorder(data, data.train_y, 0.2, epochs)
    recipe = TINY.model_copy(update={"budget": BudgetSpec(unit="epochs", value=epochs)})
    model, _ = train_full(data, recipe, Hooks(on_epoch_end=rec.on_epoch_end))
    model.eval()
    head = classifier_layer(model)
    members = torch.nonzero(data.train_y == 3).flatten()
    grads = []
    for i in members.tolist():  # the reference loop
        model.zero_grad()
        x = data.normalize(data.train_x[i:i + 1])
        torch.nn.functional.cross_entropy(model(x), data.train_y[i:i + 1]).backward()
        grads.append(head.weight.grad.flatten().double().clone())
    g = torch.stack(grads)
    unit = g / g.norm(dim=1, keepdim=True)
    cosine = unit @ unit.T
    cosine.fill_diagonal_(-np.inf)
    ref = (cosine > 0.8).sum(dim=1)
    # pairs within float32 rounding of the threshold may fall either way
    close = ((cosine - 0.8).abs() < 1e-5).sum(dim=1)
    ours = rec.counts[-1, members].long()
    assert close.sum() <= 4 and ref.sum() > 0
    assert ((ours - ref).abs() <= close).all()
    assert torch.equal(ours[close == 0], ref[close == 0])


def trial(selector_args: dict | None = None, dynamics: DynamicsSpec | None = None
          ) -> TrialSpec:
    return TrialSpec(sweep="s", dataset=DataSpec(name="digits"), arch="mlp", selector="nfg",
                     selector_args=selector_args or {}, ratio=0.1, seed=4, dynamics=dynamics)


def test_params_are_the_proxy_recipe_and_the_radius():
    plain = trial()
    assert neighbour_params(plain) == {"recipe": nfg_proxy(plain).key_dump(), "radius": 0.2}
    assert neighbour_params(trial({"radius": 0.35}))["radius"] == 0.35
    selected_by = trial(dynamics=DynamicsSpec(arch="small_cnn"))
    assert neighbour_params(selected_by)["recipe"]["arch"] == "small_cnn"
    assert neighbour_params(trial().model_copy(update={"seed": 9})) == neighbour_params(plain)
