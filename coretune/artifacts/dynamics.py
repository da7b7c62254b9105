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

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from coretune.artifacts.graph import BuildContext, provider_of, register_artifact
from coretune.artifacts.store import Artifact, Built
from coretune.artifacts.teacher import train_full
from coretune.spec import DynamicsSpec, TrialSpec
from coretune.train.data import DeviceData, ImageDataset, to_device
from coretune.train.evaluate import predict_logits
from coretune.train.loop import Hooks, plan_steps

SCORE_NAMES = ("aum", "forgetting", "el2n")
GROUND_TRUTH = "ground_truth"


class DynamicsRecorder:
    """Accumulates AUM, forgetting and EL2N on the device, vectorised per batch."""

    def __init__(self, data: DeviceData, labels: torch.Tensor, num_epochs: int,
                 el2n_epoch: int):
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


def default_el2n_epoch(recipe: DynamicsSpec, n: int) -> int:
    """Paul et al. score at ~10% of training (epoch 20 of 200); at least one epoch."""
    _, _, _, report_epochs = plan_steps(n, recipe.optimizer, recipe.budget)
    return max(1, round(0.1 * report_epochs[-1]))


def record_dynamics(ds: ImageDataset, recipe: DynamicsSpec, labels: np.ndarray | None = None,
                    device: str = "cpu") -> Built:
    """Train on the full split with ``labels`` (ground truth by default) and record scores."""
    n = len(ds.train_y)
    y = ds.train_y if labels is None else np.asarray(labels, dtype=np.int64)
    if y.shape != (n,):
        raise ValueError(f"dynamics labels have shape {y.shape}, expected ({n},)")
    _, _, _, report_epochs = plan_steps(n, recipe.optimizer, recipe.budget)
    el2n_epoch = recipe.el2n_epoch or default_el2n_epoch(recipe, n)
    data = to_device(ds, device)
    targets = torch.as_tensor(y, device=data.device)
    rec = DynamicsRecorder(data, targets, report_epochs[-1], el2n_epoch)
    _, result = train_full(data, recipe, Hooks(rec.on_batch, rec.on_epoch_end), targets)
    meta = {"dataset": ds.name, "label_source": recipe.label_source, "seed": recipe.seed,
            "recipe": recipe.model_dump(mode="json"), "el2n_epoch": el2n_epoch,
            "final_test_acc": result.metrics.get("test_acc"), "train_seconds": result.seconds}
    return Built(rec.scores(), meta)


def dynamics_params(trial: TrialSpec) -> Mapping[str, Any] | None:
    return None if trial.dynamics is None else trial.dynamics.model_dump(mode="json")


def dynamics_deps(trial: TrialSpec) -> dict[str, str]:
    """Ground truth comes with the dataset; any other label source is an artifact."""
    source = trial.dynamics.label_source if trial.dynamics is not None else GROUND_TRUTH
    return {} if source == GROUND_TRUTH else {"labels": provider_of(source).name}


def scores_of(art: Artifact) -> dict[str, np.ndarray]:
    """What a selector that needs ``scores`` is handed."""
    return {k: art.array(k) for k in SCORE_NAMES}


@register_artifact("dynamics", version=1, params=dynamics_params, deps=dynamics_deps,
                   provides={"scores"}, context=scores_of, gpu=True)
def build_dynamics(ctx: BuildContext) -> Built:
    """Per-sample AUM, forgetting and EL2N of one full-data run on the trial's label source."""
    recipe = DynamicsSpec.model_validate(ctx.params)
    labels = ctx.deps["labels"].array("labels") if "labels" in ctx.deps else None
    return record_dynamics(ctx.dataset, recipe, labels, ctx.device)
