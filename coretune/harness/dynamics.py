"""Training dynamics: one recorded full-data run yields per-sample difficulty scores.

- AUM (Pleiss et al., NeurIPS 2020, Eq. 1–2): mean over epochs of the margin
  z_assigned − max_{k≠assigned} z_k, taken from each sample's training forward pass.
- Forgetting (Toneva et al., ICLR 2019, Sec. 2): number of transitions from correctly to
  incorrectly classified between consecutive presentations; a sample never learned gets
  the largest count (``epochs``), as the paper ranks those as most forgettable.
- EL2N (Paul et al., NeurIPS 2021, Def. 2.1): ‖softmax(f(x)) − onehot(y)‖₂ of the model
  after ``el2n_epoch`` epochs (early in training), un-augmented, eval mode.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

from coretune.harness.artifacts import Artifact, ArtifactStore, content_key
from coretune.harness.data import DeviceData, ImageDataset, to_device
from coretune.harness.losses import LossConfig
from coretune.harness.models import build_model
from coretune.harness.train import Hooks, TrainRecipe, plan_steps, predict_logits, train_model

SCORE_NAMES = ("aum", "forgetting", "el2n")


class DynamicsRecorder:
    """Accumulates AUM, forgetting and EL2N on the device, vectorised per batch."""

    def __init__(self, data: DeviceData, labels: torch.Tensor, num_epochs: int, el2n_epoch: int):
        n, dev = labels.numel(), labels.device
        self.data, self.labels = data, labels
        self.num_epochs, self.el2n_epoch = num_epochs, el2n_epoch
        self.margin_sum = torch.zeros(n, dtype=torch.float64, device=dev)
        self.presentations = torch.zeros(n, dtype=torch.int64, device=dev)
        self.forgets = torch.zeros(n, dtype=torch.int64, device=dev)
        self.prev_correct = torch.zeros(n, dtype=torch.bool, device=dev)
        self.learned = torch.zeros(n, dtype=torch.bool, device=dev)
        self.el2n = torch.full((n,), float("nan"), dtype=torch.float32, device=dev)

    def on_batch(self, epoch: int, idx: torch.Tensor, logits: torch.Tensor) -> None:
        z = logits.float()
        y = self.labels[idx]
        assigned = z.gather(1, y[:, None]).squeeze(1)
        others = z.scatter(1, y[:, None], float("-inf")).amax(dim=1)
        self.margin_sum.index_add_(0, idx, (assigned - others).double())
        self.presentations.index_add_(0, idx, torch.ones_like(idx))
        correct = z.argmax(dim=1) == y
        self.forgets.index_add_(0, idx, (self.prev_correct[idx] & ~correct).long())
        self.prev_correct[idx] = correct
        self.learned[idx] |= correct

    def on_epoch_end(self, epoch: int, model: nn.Module) -> None:
        if epoch + 1 == self.el2n_epoch:
            probs = torch.softmax(predict_logits(model, self.data, self.data.train_x), dim=1)
            onehot = torch.nn.functional.one_hot(self.labels, probs.shape[1]).float()
            self.el2n = torch.linalg.vector_norm(probs - onehot, dim=1)
            model.train()

    def scores(self) -> dict[str, np.ndarray]:
        aum = self.margin_sum / self.presentations.clamp(min=1)
        forgetting = torch.where(self.learned, self.forgets,
                                 torch.full_like(self.forgets, self.num_epochs))
        return {"aum": aum.float().cpu().numpy(), "forgetting": forgetting.float().cpu().numpy(),
                "el2n": self.el2n.cpu().numpy()}


def dynamics_key(dataset: str, label_source: str, seed: int, recipe: TrainRecipe,
                 el2n_epoch: int) -> str:
    return content_key("dynamics", {"dataset": dataset, "label_source": label_source,
                                    "seed": seed, "recipe": recipe.as_dict(),
                                    "el2n_epoch": el2n_epoch})


def default_el2n_epoch(recipe: TrainRecipe, n: int) -> int:
    """Paul et al. score at ~10% of training (epoch 20 of 200); at least one epoch."""
    _, _, _, report_epochs = plan_steps(n, recipe.optim, recipe.budget)
    return max(1, round(0.1 * report_epochs[-1]))


def record_dynamics(ds: ImageDataset, seed: int, recipe: TrainRecipe,
                    labels: np.ndarray | None = None, label_source: str = "ground_truth",
                    el2n_epoch: int | None = None, device: str = "cpu"):
    """Train on the full split with ``labels`` (ground truth by default) and record scores.

    Returns (arrays, meta, blobs) for :meth:`ArtifactStore.save`.
    """
    data = to_device(ds, device)
    y = torch.as_tensor(ds.train_y if labels is None else labels, dtype=torch.int64,
                        device=data.device)
    n = y.numel()
    _, _, _, report_epochs = plan_steps(n, recipe.optim, recipe.budget)
    el2n_epoch = el2n_epoch or default_el2n_epoch(recipe, n)
    rec = DynamicsRecorder(data, y, report_epochs[-1], el2n_epoch)
    relabelled = data if labels is None else dataclasses.replace(data, train_y=y)
    torch.manual_seed(seed)
    model = build_model(recipe.arch, ds.input_shape, ds.num_classes).to(data.device)
    result = train_model(model, relabelled, np.arange(n), LossConfig("hard"), recipe.optim,
                         recipe.budget, seed, hooks=Hooks(rec.on_batch, rec.on_epoch_end))
    meta = {"dataset": ds.name, "label_source": label_source, "seed": seed,
            "recipe": recipe.as_dict(), "el2n_epoch": el2n_epoch,
            "final_test_acc": result.metrics.get("test_acc"), "train_seconds": result.seconds}
    return rec.scores(), meta, None


def ground_truth_dynamics_key(ds: ImageDataset, seed: int, recipe: TrainRecipe) -> str:
    """Key of the ground-truth dynamics run that :func:`get_dynamics` caches."""
    return dynamics_key(ds.name, "ground_truth", seed, recipe,
                        default_el2n_epoch(recipe, len(ds.train_y)))


def get_dynamics(store: ArtifactStore, ds: ImageDataset, seed: int, recipe: TrainRecipe,
                 device: str = "cpu") -> tuple[Artifact, bool]:
    """Cached ground-truth training dynamics of (dataset, arch, seed, recipe)."""
    el2n_epoch = default_el2n_epoch(recipe, len(ds.train_y))
    return store.get_or_compute(
        ground_truth_dynamics_key(ds, seed, recipe),
        lambda: record_dynamics(ds, seed, recipe, el2n_epoch=el2n_epoch, device=device))
