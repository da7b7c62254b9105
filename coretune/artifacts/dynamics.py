"""Training dynamics: recorded full-data proxy runs yield per-sample scores and proxies.

Scores, each averaged over ``runs`` proxy runs (seeds ``seed``, ``seed + 1``, …):

- AUM (Pleiss et al., NeurIPS 2020, Eq. 1–2): mean over epochs of the margin
  z_assigned − max_{k≠assigned} z_k, taken from each sample's training forward pass.
- Forgetting (Toneva et al., ICLR 2019, Sec. 2): number of transitions from correctly to
  incorrectly classified between consecutive presentations; a sample never learned gets
  the largest count (``epochs``), as the paper ranks those as most forgettable.
- EL2N (Paul et al., NeurIPS 2021, Def. 2.1): ‖softmax(f(x)) − onehot(y)‖₂ of the model
  after ``el2n_epoch`` epochs (early in training), un-augmented, eval mode.
- GraNd (Paul et al., Def. 2.2): ‖∇_w ℓ(f(x), y)‖₂ at the same epoch, for the last linear
  layer in closed form, ‖p − y‖·sqrt(1 + ‖h‖²) (the last-layer restriction of DeepCore).
- Entropy, least confidence (1 − max p) and margin (p₁ − p₂) of the final model's softmax
  (Coleman et al., ICLR 2020, "Selection via Proxy").

Proxies (run 0): per-epoch probability of the assigned label and predicted class of every
sample (float16 / int16, ``[runs, epochs, N]``), the validation loss after each epoch
(when the dataset holds a validation split), and the final model's penultimate features
and logits, from which :class:`~coretune.selectors.proxies.GradEmbedding` forms the
last-layer gradient embeddings in closed form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from coretune.artifacts.graph import BuildContext, provider_of, register_artifact
from coretune.artifacts.store import Artifact, Built
from coretune.artifacts.teacher import train_full
from coretune.errors import SpecError
from coretune.selectors.base import proxy_recipe
from coretune.selectors.proxies import GradEmbedding, TrainingOutputs
from coretune.spec import DynamicsSpec, TrialSpec
from coretune.train.data import DeviceData, ImageDataset, to_device
from coretune.train.evaluate import predict_logits, predict_with_features
from coretune.train.loop import Hooks, plan_steps
from coretune.train.models import classifier_layer

SCORE_NAMES = ("aum", "forgetting", "el2n", "grand", "entropy", "margin", "least_confidence")
GROUND_TRUTH = "ground_truth"


def el2n_of(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """EL2N (Paul et al., Def. 2.1) of each row: ‖softmax − onehot(y)‖₂."""
    return torch.linalg.vector_norm(probs - F.one_hot(labels, probs.shape[1]).float(), dim=1)


def single_proxy_run(trial: TrialSpec) -> DynamicsSpec | None:
    """The selector's own proxy recipe (:func:`~coretune.selectors.base.proxy_recipe`) for
    kinds that record one run on the training labels; a ``proxy:`` that asks for another
    label source or several runs is refused when the sweep is planned."""
    recipe = proxy_recipe(trial)
    if recipe is not None and (recipe.label_source != GROUND_TRUTH or recipe.runs != 1):
        raise SpecError(f"search space {trial.sweep}: selector {trial.selector!r} records "
                        "one proxy run on the training labels; its proxy: may not set "
                        f"label_source ({recipe.label_source!r}) or runs ({recipe.runs})")
    return recipe


def uncertainty_scores(probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Entropy −Σ p log p, least confidence 1 − p₁ and margin p₁ − p₂ of each row."""
    p = probs.double()
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1)
    top = p.topk(min(2, p.shape[1]), dim=1).values
    second = top[:, 1] if top.shape[1] > 1 else torch.zeros_like(top[:, 0])
    return {"entropy": entropy, "least_confidence": 1.0 - top[:, 0], "margin": top[:, 0] - second}


class DynamicsRecorder:
    """Accumulates one run's scores and per-epoch outputs on the device, vectorised per batch."""

    def __init__(self, data: DeviceData, labels: torch.Tensor, num_epochs: int,
                 el2n_epoch: int, outputs: str = "train_pass"):
        n, dev = labels.numel(), labels.device
        self.data, self.labels = data, labels
        self.num_epochs, self.el2n_epoch, self.outputs = num_epochs, el2n_epoch, outputs
        self.margin_sum = torch.zeros(n, dtype=torch.float64, device=dev)
        self.presentations = torch.zeros(n, dtype=torch.int64, device=dev)
        self.forgets = torch.zeros(n, dtype=torch.int64, device=dev)
        self.prev_correct = torch.zeros(n, dtype=torch.bool, device=dev)
        self.learned = torch.zeros(n, dtype=torch.bool, device=dev)
        nan = float("nan")
        self.el2n = torch.full((n,), nan, dtype=torch.float32, device=dev)
        self.grand = torch.full((n,), nan, dtype=torch.float32, device=dev)
        self.p_true = torch.full((num_epochs, n), nan, dtype=torch.float16, device=dev)
        self.pred = torch.full((num_epochs, n), -1, dtype=torch.int16, device=dev)
        self.val_loss = (None if data.val_x is None
                         else torch.full((num_epochs,), nan, dtype=torch.float32))
        self.final: dict[str, torch.Tensor] = {}

    def _record_outputs(self, epoch: int, idx: torch.Tensor | slice, z: torch.Tensor,
                        y: torch.Tensor) -> None:
        p = torch.softmax(z.float(), dim=1)
        self.p_true[epoch, idx] = p.gather(1, y[:, None]).squeeze(1).half()
        self.pred[epoch, idx] = p.argmax(dim=1).to(torch.int16)

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
        if self.outputs == "train_pass" and epoch < self.num_epochs:
            self._record_outputs(epoch, idx, z, y)

    def on_epoch_end(self, epoch: int, model: nn.Module) -> None:
        if epoch + 1 == self.el2n_epoch:
            logits, feats = predict_with_features(model, self.data, self.data.train_x)
            self.el2n = el2n_of(torch.softmax(logits, dim=1), self.labels)
            bias = float(classifier_layer(model).bias is not None)
            self.grand = self.el2n * torch.sqrt(bias + (feats * feats).sum(dim=1))
        if self.outputs == "eval" and epoch < self.num_epochs:
            z = predict_logits(model, self.data, self.data.train_x)
            self._record_outputs(epoch, slice(None), z, self.labels)
        if self.val_loss is not None and epoch < self.num_epochs:
            z = predict_logits(model, self.data, self.data.val_x)
            self.val_loss[epoch] = F.cross_entropy(z, self.data.val_y).item()
        model.train()

    def finish(self, model: nn.Module) -> None:
        """The final model's logits, penultimate features and uncertainty scores."""
        logits, feats = predict_with_features(model, self.data, self.data.train_x)
        self.final = {"logits": logits, "features": feats,
                      **uncertainty_scores(torch.softmax(logits, dim=1))}
        self.bias = classifier_layer(model).bias is not None
        model.train()

    def scores(self) -> dict[str, np.ndarray]:
        aum = self.margin_sum / self.presentations.clamp(min=1)
        forgetting = torch.where(self.learned, self.forgets,
                                 torch.full_like(self.forgets, self.num_epochs))
        out = {"aum": aum, "forgetting": forgetting, "el2n": self.el2n, "grand": self.grand}
        out |= {k: self.final[k] for k in ("entropy", "margin", "least_confidence")
                if k in self.final}
        return {k: v.float().cpu().numpy() for k, v in out.items()}


def default_el2n_epoch(recipe: DynamicsSpec, n: int) -> int:
    """Paul et al. score at ~10% of training (epoch 20 of 200); at least one epoch."""
    _, _, _, report_epochs = plan_steps(n, recipe.optimizer, recipe.budget)
    return max(1, round(0.1 * report_epochs[-1]))


def record_dynamics(ds: ImageDataset, recipe: DynamicsSpec, labels: np.ndarray | None = None,
                    device: str = "cpu") -> Built:
    """Train ``recipe.runs`` proxy runs on the full split with ``labels`` (ground truth by
    default), seeds ``recipe.seed + r``; record scores (averaged) and proxies."""
    n = len(ds.train_y)
    y = ds.train_y if labels is None else np.asarray(labels, dtype=np.int64)
    if y.shape != (n,):
        raise ValueError(f"dynamics labels have shape {y.shape}, expected ({n},)")
    _, _, _, report_epochs = plan_steps(n, recipe.optimizer, recipe.budget)
    el2n_epoch = recipe.el2n_epoch or default_el2n_epoch(recipe, n)
    data = to_device(ds, device)
    targets = torch.as_tensor(y, device=data.device)
    per_run, seconds, final_acc = [], [], []
    for r in range(recipe.runs):
        rec = DynamicsRecorder(data, targets, report_epochs[-1], el2n_epoch, recipe.outputs)
        model, result = train_full(data, recipe.model_copy(update={"seed": recipe.seed + r}),
                                   Hooks(rec.on_batch, rec.on_epoch_end), targets)
        rec.finish(model)
        per_run.append(rec)
        seconds.append(result.seconds)
        final_acc.append(result.metrics.get("test_acc"))
    scores = [rec.scores() for rec in per_run]
    arrays: dict[str, np.ndarray] = {k: np.mean([s[k] for s in scores], axis=0).astype(np.float32)
                                     for k in SCORE_NAMES}
    first = per_run[0]
    arrays |= {
        "p_true": np.stack([rec.p_true.cpu().numpy() for rec in per_run]),
        "pred": np.stack([rec.pred.cpu().numpy() for rec in per_run]),
        "features": first.final["features"].cpu().numpy().astype(np.float16),
        "logits": first.final["logits"].cpu().numpy().astype(np.float32),
        "labels": y.astype(np.int64)}
    if first.val_loss is not None:
        arrays["val_loss"] = np.stack([rec.val_loss.numpy() for rec in per_run])
    meta = {"dataset": ds.name, "label_source": recipe.label_source, "seed": recipe.seed,
            "runs": recipe.runs, "recipe": recipe.model_dump(mode="json"),
            "el2n_epoch": el2n_epoch, "epochs": report_epochs[-1], "bias": first.bias,
            "final_test_acc": final_acc[0], "final_test_acc_runs": final_acc,
            "train_seconds": float(sum(seconds))}
    return Built(arrays, meta)


def dynamics_params(trial: TrialSpec) -> Mapping[str, Any] | None:
    return None if trial.dynamics is None else trial.dynamics.key_dump()


def dynamics_deps(trial: TrialSpec) -> dict[str, str]:
    """Ground truth comes with the dataset; any other label source is an artifact."""
    source = trial.dynamics.label_source if trial.dynamics is not None else GROUND_TRUTH
    return {} if source == GROUND_TRUTH else {"labels": provider_of(source).name}


def scores_of(art: Artifact) -> dict[str, np.ndarray]:
    """What a selector that needs ``scores`` is handed: every score by name."""
    return {k: art.array(k) for k in SCORE_NAMES}


def outputs_of(art: Artifact) -> TrainingOutputs:
    val = art.array("val_loss") if art.has("val_loss") else None
    return TrainingOutputs(art.array("p_true"), art.array("pred"), val)


def features_of(art: Artifact) -> np.ndarray:
    return art.array("features").astype(np.float32)


def grad_embed_of(art: Artifact) -> GradEmbedding:
    """Last-layer gradient embeddings of the final proxy model (run 0), in closed form."""
    logits = art.array("logits").astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(probs)), art.array("labels")] -= 1.0
    return GradEmbedding(probs.astype(np.float32), features_of(art), bool(art.meta["bias"]))


@register_artifact("dynamics", version=2, params=dynamics_params, deps=dynamics_deps,
                   provides={"scores": scores_of, "outputs": outputs_of,
                             "features": features_of, "grad_embed": grad_embed_of}, gpu=True,
                   recipes=("dynamics",))
def build_dynamics(ctx: BuildContext) -> Built:
    """Per-sample scores and proxies of full-data runs on the trial's label source."""
    recipe = DynamicsSpec.model_validate(ctx.params)
    labels = ctx.deps["labels"].array("labels") if "labels" in ctx.deps else None
    return record_dynamics(ctx.dataset, recipe, labels, ctx.device)
