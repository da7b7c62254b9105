"""Evaluators: a split and its labels, scored at each report.

The test split with ground truth is the usual one; ELFS's β search scores students on a
held-out split labelled with pseudo-labels, never touching ground truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from coretune.train.data import DeviceData


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict_logits(model: nn.Module, data: DeviceData | Callable, images: torch.Tensor,
                   batch_size: int = 1024) -> torch.Tensor:
    """Eval-mode float32 logits of uint8 ``images`` (no augmentation).

    ``data`` is the :class:`DeviceData` whose normalisation applies (or the function itself).
    """
    normalize = data.normalize if isinstance(data, DeviceData) else data
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        with autocast(images.device):
            out.append(model(normalize(images[start:start + batch_size])).float())
    return torch.cat(out)


@torch.no_grad()
def predict_with_features(model: nn.Module, data: DeviceData | Callable, images: torch.Tensor,
                          batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode float32 (logits, penultimate features): the classifier layer's output and
    its input (:func:`~coretune.train.models.classifier_layer`), from one forward pass."""
    from coretune.train.models import classifier_layer

    captured: list[torch.Tensor] = []
    hook = classifier_layer(model).register_forward_pre_hook(
        lambda _m, inputs: captured.append(inputs[0].detach().flatten(1).float()))
    try:
        logits = predict_logits(model, data, images, batch_size)
    finally:
        hook.remove()
    return logits, torch.cat(captured)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15,
                           prefix: str = "test") -> dict:
    """Accuracy, top-5 accuracy, NLL and expected calibration error (Guo et al. 2017, Eq. 3)."""
    logp = F.log_softmax(logits.float(), dim=1)
    conf, pred = logp.exp().max(dim=1)
    finite = torch.isfinite(logits).all(dim=1)  # a diverged model predicts nothing
    conf = torch.nan_to_num(conf, nan=0.0)
    correct = ((pred == labels) & finite).float()
    k = min(5, logits.shape[1])
    top5 = ((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1) & finite).float()
    bin_id = torch.clamp((conf * bins).long(), min=0, max=bins - 1)
    gap = torch.zeros(bins, device=logits.device).index_add_(0, bin_id, conf - correct)
    ece = gap.abs().sum() / labels.numel()
    return {f"{prefix}_acc": correct.mean().item(), f"{prefix}_top5": top5.mean().item(),
            f"{prefix}_nll": F.nll_loss(logp, labels).item(), f"{prefix}_ece": ece.item()}


@dataclass(frozen=True)
class Evaluator:
    """Score a model on ``images`` (uint8, on the device) against ``labels``.

    Metrics are named ``<name>_acc``, ``<name>_top5``, ``<name>_nll``, ``<name>_ece``.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor

    def evaluate(self, model: nn.Module, normalize: Callable) -> dict:
        return classification_metrics(predict_logits(model, normalize, self.images),
                                      self.labels, prefix=self.name)


def on_test_split(data: DeviceData) -> Evaluator:
    """The test split with its ground-truth labels."""
    return Evaluator("test", data.test_x, data.test_y)


def split_evaluators(data: DeviceData) -> list[Evaluator]:
    """Test split, and the validation split when the dataset holds one out."""
    out = [on_test_split(data)]
    if data.val_x is not None:
        out.append(Evaluator("val", data.val_x, data.val_y))
    return out


def hungarian_accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of predicted clusters to classes (scipy's
    Hungarian algorithm on the contingency table)."""
    from scipy.optimize import linear_sum_assignment

    truth, pred = np.asarray(truth, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    k = int(max(truth.max(), pred.max())) + 1
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (pred, truth), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / truth.size)


@dataclass(frozen=True)
class MatchedEvaluator(Evaluator):
    """Accuracy of a model trained on cluster ids, under the best one-to-one matching of
    its predicted clusters to the classes: ``<name>_matched_acc``. For reports only: it
    reads the split's ground truth."""

    def evaluate(self, model: nn.Module, normalize: Callable) -> dict:
        pred = predict_logits(model, normalize, self.images).argmax(dim=1).cpu().numpy()
        return {f"{self.name}_matched_acc": hungarian_accuracy(self.labels.cpu().numpy(), pred)}


def held_out_evaluator(data: DeviceData, positions: np.ndarray, labels: np.ndarray,
                       name: str = "heldout") -> Evaluator:
    """Training images at ``positions`` scored against given ``labels`` (e.g. pseudo-labels)."""
    pos = torch.as_tensor(np.asarray(positions, dtype=np.int64), device=data.device)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=data.device)
    if y.numel() != pos.numel():
        raise ValueError(f"held-out split has {pos.numel()} images but {y.numel()} labels")
    return Evaluator(name, data.train_x[pos], y)


def evaluate(model: nn.Module, data: DeviceData) -> dict:
    """Test-split metrics of ``model``."""
    return on_test_split(data).evaluate(model, data.normalize)
