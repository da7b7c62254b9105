"""NFG's proxy run and its per-epoch neighbour counts of last-layer loss gradients.

Mohanty, Anudeep, Mopuri, "Noise-free Loss Gradients: A Surprisingly Effective Baseline
for Coreset Selection", TMLR 2025. The selector's own proxy recipe
(:func:`coretune.selectors.base.proxy_recipe`, NFG's being 10 epochs of plain SGD at batch
32 without augmentation) is trained on the full training split with its labels. After
every epoch — the official code's checkpoints ``saved_model_{0..9}`` — the model is put in
eval mode and, class by class on un-augmented inputs, each sample's neighbours are counted:
the other samples of its class whose last-layer weight gradient has cosine similarity
> 1 − r (:func:`~coretune.selectors.gradient_neighbours.class_neighbour_counts`, in the
exact factorised form). Features and gradients are never stored; only the counts
``[epochs, N]`` (int32), the labels and, in the metadata, the radius, the number of
epochs and the eval-mode training accuracy after each epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from coretune.artifacts.dynamics import GROUND_TRUTH, single_proxy_run
from coretune.artifacts.graph import BuildContext, register_artifact
from coretune.artifacts.store import Artifact, Built
from coretune.artifacts.teacher import train_full
from coretune.selectors.gradient_neighbours import (
    DEFAULT_BLOCK,
    DEFAULT_RADIUS,
    NeighbourCounts,
    class_neighbour_counts,
    loss_gradient_errors,
)
from coretune.spec import DynamicsSpec, TrialSpec
from coretune.train.data import DeviceData, ImageDataset, to_device
from coretune.train.evaluate import predict_with_features
from coretune.train.loop import Hooks, plan_steps


class NeighbourCountRecorder:
    """Counts every sample's gradient neighbours within its class at each epoch's end."""

    def __init__(self, data: DeviceData, labels: torch.Tensor, radius: float, epochs: int,
                 block: int = DEFAULT_BLOCK):
        self.data, self.labels, self.radius, self.block = data, labels, radius, block
        order = torch.sort(labels, stable=True).indices
        sizes = torch.bincount(labels[order]).tolist()
        self.classes = [members for members in torch.split(order, sizes) if members.numel()]
        self.counts = torch.zeros((epochs, labels.numel()), dtype=torch.int32,
                                  device=labels.device)
        self.train_acc = [float("nan")] * epochs

    def on_epoch_end(self, epoch: int, model: torch.nn.Module) -> None:
        if epoch >= self.counts.shape[0]:
            return
        correct = 0
        for members in self.classes:  # one eval-mode forward pass and count per class
            logits, features = predict_with_features(model, self.data,
                                                     self.data.train_x[members])
            targets = self.labels[members]
            counts = class_neighbour_counts(loss_gradient_errors(logits, targets), features,
                                            self.radius, self.block)
            self.counts[epoch, members] = counts.to(torch.int32)
            correct += int((logits.argmax(dim=1) == targets).sum())
        self.train_acc[epoch] = correct / self.labels.numel()
        model.train()


def record_neighbour_counts(ds: ImageDataset, recipe: DynamicsSpec, radius: float,
                            device: str = "cpu", block: int = DEFAULT_BLOCK) -> Built:
    """Train ``recipe`` on the full training split (its labels) and count each sample's
    gradient neighbours at radius ``radius`` after every epoch."""
    if recipe.label_source != GROUND_TRUTH or recipe.runs != 1:  # the dynamics: fallback
        raise ValueError("the gradient_neighbours proxy is one run on the training labels; "
                         f"got label_source={recipe.label_source!r}, runs={recipe.runs}")
    n = len(ds.train_y)
    _, _, _, report_epochs = plan_steps(n, recipe.optimizer, recipe.budget)
    data = to_device(ds, device)
    recorder = NeighbourCountRecorder(data, data.train_y, radius, report_epochs[-1], block)
    _, result = train_full(data, recipe, Hooks(on_epoch_end=recorder.on_epoch_end))
    meta = {"dataset": ds.name, "recipe": recipe.model_dump(mode="json"), "radius": radius,
            "epochs": report_epochs[-1], "train_acc": recorder.train_acc,
            "final_test_acc": result.metrics.get("test_acc"), "block": block,
            "train_seconds": result.seconds}
    return Built({"counts": recorder.counts.cpu().numpy(),
                  "labels": np.asarray(ds.train_y, dtype=np.int64)}, meta)


def neighbour_params(trial: TrialSpec) -> Mapping[str, Any] | None:
    """The proxy recipe (the selector's own, else the sweep's ``dynamics:``) and radius."""
    recipe = single_proxy_run(trial) or trial.dynamics
    if recipe is None:
        return None
    return {"recipe": recipe.key_dump(),
            "radius": float(trial.selector_args.get("radius", DEFAULT_RADIUS))}


def neighbour_counts_of(art: Artifact) -> NeighbourCounts:
    """What NFG is handed: counts ``[epochs, N]``, the labels and the radius."""
    return NeighbourCounts(art.array("counts"), art.array("labels"), float(art.meta["radius"]))


@register_artifact("gradient_neighbours", version=1, params=neighbour_params,
                   provides={"gradient_neighbours": neighbour_counts_of}, gpu=True,
                   recipes=("dynamics",))
def build_gradient_neighbours(ctx: BuildContext) -> Built:
    """NFG's proxy run with its per-epoch gradient-neighbour counts."""
    recipe = DynamicsSpec.model_validate(ctx.params["recipe"])
    return record_neighbour_counts(ctx.dataset, recipe, float(ctx.params["radius"]),
                                   ctx.device)
