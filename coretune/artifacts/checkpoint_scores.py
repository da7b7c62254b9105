"""The checkpoint_scores kind: per-sample scores at R points of a compute-aligned proxy run.

CAD-Prune (Dey, Sahdev et al., "Rethinking Dataset Distillation: Hard Truths about Soft
Labels", CVPR 2026, arXiv 2604.18811, Sec. 5) scores the data with a model trained on the
**full** training split for exactly the compute its students get. The selector declares
that run (:func:`coretune.selectors.compute_aware.cad_proxy`, read through
:func:`~coretune.selectors.base.proxy_recipe` with the spec's ``proxy:`` override); its
budget, optimiser and batch are a student's, and here they become the proxy's:

- a student trains on n = ``budget_for(N, ratio)`` samples for T = ``plan_steps(n, …)``
  optimiser steps at batch b = min(batch, n) and sees I images (K = I ÷ N full-data
  epochs, fractional K allowed);
- the proxy trains on all N samples for the same T steps at the same batch b, under the
  same learning-rate schedule. It sees T·b images give or take its own last batches,
  slightly more than I when the student's epochs end in a short batch (at most one short
  batch per student epoch: a coreset of 144 at batch 32 sees 28.8 images a step, the
  proxy 32); both counts are in the metadata (``student_images``, ``proxy_images``).

At R points equally spaced in the images the proxy sees (R = max(8, ⌈K⌉) unless the
selector's ``points`` says), an eval-mode, un-augmented pass over the whole training split
records each sample's true-class probability p_y and EL2N ‖softmax − onehot‖₂
(``[R, N]`` float32 each; R forward passes over N images on top of the training run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from coretune.artifacts.dynamics import el2n_of, single_proxy_run
from coretune.artifacts.graph import BuildContext, register_artifact
from coretune.artifacts.store import Artifact, Built
from coretune.artifacts.teacher import train_full
from coretune.selectors import budget_for
from coretune.selectors.compute_aware import CheckpointScores, default_points
from coretune.spec import BudgetSpec, DynamicsSpec, TrialSpec
from coretune.train.data import DeviceData, ImageDataset, to_device
from coretune.train.evaluate import predict_logits
from coretune.train.loop import Hooks, images_seen, plan_steps


def checkpoint_params(trial: TrialSpec) -> Mapping[str, Any] | None:
    """The proxy recipe (the selector's, with the spec's override), the number of points R
    (None: derived from the compute) and the students' ratio, which sets the compute."""
    recipe = single_proxy_run(trial)
    if recipe is None:
        return None
    return {"recipe": recipe.key_dump(), "points": trial.selector_args.get("points"),
            "ratio": trial.ratio}


def images_per_step(n: int, batch_size: int, steps_per_epoch: int, steps: int) -> np.ndarray:
    """Cumulative images seen after each of ``steps`` steps over ``n`` samples, as
    :func:`coretune.train.loop.train_steps` batches them (the last batch of an epoch takes
    the rest)."""
    sizes = np.full(steps_per_epoch, batch_size, dtype=np.int64)
    sizes[-1] = n - (steps_per_epoch - 1) * batch_size
    epochs = -(-steps // steps_per_epoch)
    return np.cumsum(np.tile(sizes, epochs)[:steps])


def aligned_recipe(recipe: DynamicsSpec, n: int, ratio: float
                   ) -> tuple[DynamicsSpec, int, int]:
    """(the full-data proxy recipe, the images a student sees, its coreset size): ``recipe``
    with the student's number of steps (as iterations) and its effective batch size."""
    n_sel = budget_for(n, ratio)
    bs, spe, total, _ = plan_steps(n_sel, recipe.optimizer, recipe.budget, n)
    images = images_seen(n_sel, bs, spe, total)
    proxy = recipe.model_copy(update={
        "optimizer": recipe.optimizer.model_copy(update={"batch_size": bs}),
        "budget": BudgetSpec(unit="iterations", value=total,
                             max_reports=recipe.budget.max_reports)})
    return proxy, images, n_sel


def record_steps(n: int, recipe: DynamicsSpec, points: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps done, images seen) at each of ``points`` points equally spaced in the images
    the full-data run ``recipe`` sees: the first step at which the images seen reach
    i/R of the total, i = 1 … R (two points may share a step when R exceeds the steps)."""
    bs, spe, total, _ = plan_steps(n, recipe.optimizer, recipe.budget)
    seen = images_per_step(n, bs, spe, total)
    targets = seen[-1] * np.arange(1, points + 1, dtype=np.float64) / points
    steps = np.searchsorted(seen, targets, side="left") + 1
    return steps, seen[steps - 1]


class CheckpointRecorder:
    """At given steps, an eval-mode pass over the un-augmented training split: p_y and
    EL2N of every sample (vectorised on the device), then the model back in train mode."""

    def __init__(self, data: DeviceData, labels: torch.Tensor, steps: np.ndarray):
        self.data, self.labels, self.steps = data, labels, [int(s) for s in steps]
        shape = (len(self.steps), labels.numel())
        self.p_true = torch.full(shape, float("nan"), dtype=torch.float32, device=labels.device)
        self.el2n = torch.full(shape, float("nan"), dtype=torch.float32, device=labels.device)
        self.done = 0

    def on_step(self, step: int, model: torch.nn.Module) -> None:
        if self.done >= len(self.steps) or self.steps[self.done] > step:
            return
        probs = torch.softmax(predict_logits(model, self.data, self.data.train_x), dim=1)
        p_true = probs.gather(1, self.labels[:, None]).squeeze(1)
        el2n = el2n_of(probs, self.labels)
        while self.done < len(self.steps) and self.steps[self.done] <= step:
            self.p_true[self.done], self.el2n[self.done] = p_true, el2n
            self.done += 1
        model.train()


def record_checkpoint_scores(ds: ImageDataset, recipe: DynamicsSpec, ratio: float,
                             points: int | None = None, device: str = "cpu") -> Built:
    """Train the compute-aligned proxy of ``recipe`` (a student's budget at ``ratio``) on
    the full training split and record p_y and EL2N at R points (module docstring)."""
    n = len(ds.train_y)
    proxy, student_images, n_sel = aligned_recipe(recipe, n, ratio)
    r = points if points is not None else default_points(student_images, n)
    steps, seen = record_steps(n, proxy, r)
    data = to_device(ds, device)
    recorder = CheckpointRecorder(data, data.train_y, steps)
    model, result = train_full(data, proxy, Hooks(on_step=recorder.on_step))
    if recorder.done != r:
        raise RuntimeError(f"the proxy recorded {recorder.done} of {r} points in "
                           f"{result.steps} steps")
    arrays = {"p_true": recorder.p_true.cpu().numpy(), "el2n": recorder.el2n.cpu().numpy(),
              "images_seen": seen.astype(np.int64), "steps": steps.astype(np.int64)}
    meta = {"dataset": ds.name, "points": r, "ratio": ratio, "coreset_size": n_sel,
            "student_images": student_images, "epochs_equivalent": student_images / n,
            "proxy_images": int(seen[-1]), "recipe": recipe.model_dump(mode="json"),
            "proxy": proxy.model_dump(mode="json"), "steps_run": result.steps,
            "final_test_acc": result.metrics.get("test_acc"),
            "train_seconds": result.seconds}
    return Built(arrays, meta)


def checkpoint_scores_of(art: Artifact) -> CheckpointScores:
    """What a selector that needs ``checkpoint_scores`` is handed."""
    return CheckpointScores(art.array("p_true"), art.array("el2n"), art.array("images_seen"))


@register_artifact("checkpoint_scores", version=1, params=checkpoint_params,
                   provides={"checkpoint_scores": checkpoint_scores_of}, gpu=True)
def build_checkpoint_scores(ctx: BuildContext) -> Built:
    """p_y and EL2N at R points of the selector's compute-aligned full-data proxy run."""
    recipe = DynamicsSpec.model_validate(ctx.params["recipe"])
    return record_checkpoint_scores(ctx.dataset, recipe, float(ctx.params["ratio"]),
                                    ctx.params["points"], ctx.device)
