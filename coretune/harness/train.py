"""The training loop: a plain function of (model, data, indices, label source, budget).

Data sits on the device as uint8; batches are sliced by index and augmented on the device
with replayable views; the host is synchronised only at report points. No global state,
so several students can later be trained side by side by the same code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from coretune.harness.augment import augment_batch, view_params
from coretune.harness.data import DeviceData
from coretune.harness.losses import LossConfig, coreset_loss


@dataclass(frozen=True)
class OptimConfig:
    """SGD (Nesterov) or AdamW with a cosine or constant schedule and linear warm-up."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    schedule: str = "cosine"
    warmup_steps: int = 0


@dataclass(frozen=True)
class Budget:
    """Training length: ``value`` passes over the coreset (epochs) or optimiser steps."""

    unit: str = "epochs"
    value: int = 30
    max_reports: int = 20


@dataclass(frozen=True)
class TrainRecipe:
    """How a full-data run (teacher, training dynamics) is trained."""

    arch: str = "small_cnn"
    optim: OptimConfig = field(default_factory=OptimConfig)
    budget: Budget = field(default_factory=Budget)

    def as_dict(self) -> dict:
        return asdict(self)


#: ``view_logits(seed, epochs[E], indices[n]) -> [E, n, K]`` teacher logits of each view.
ViewLogits = Callable[[int, np.ndarray, np.ndarray], torch.Tensor | np.ndarray]


@dataclass
class TeacherSignal:
    """Where a student's teacher logits come from: fixed per image (soft) or per view (kd)."""

    fixed_logits: torch.Tensor | None = None
    view_logits: ViewLogits | None = None


@dataclass
class Hooks:
    """Optional callbacks; ``on_report`` gets each report's metrics dict."""

    on_batch: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None
    on_epoch_end: Callable[[int, nn.Module], None] | None = None
    on_report: Callable[[dict], None] | None = None


@dataclass
class TrainResult:
    metrics: dict
    curves: list[dict] = field(default_factory=list)
    steps: int = 0
    epochs_run: float = 0.0
    seconds: float = 0.0


def plan_steps(n: int, optim: OptimConfig, budget: Budget) -> tuple[int, int, int, list[int]]:
    """(batch size, steps per epoch, total steps, epochs after which to report)."""
    if budget.unit not in ("epochs", "iterations"):
        raise ValueError(f"budget.unit must be 'epochs' or 'iterations', got {budget.unit!r}")
    bs = max(1, min(optim.batch_size, n))
    spe = math.ceil(n / bs)
    total = budget.value * spe if budget.unit == "epochs" else budget.value
    n_epochs = math.ceil(total / spe)
    n_reports = max(1, min(n_epochs, budget.max_reports))
    report_epochs = sorted({int(round(e)) for e in np.linspace(n_epochs / n_reports, n_epochs,
                                                                n_reports)})
    return bs, spe, total, report_epochs


def make_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int):
    """Optimiser and per-step LR scheduler (no weight decay on norms and biases)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    elif cfg.name == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
    else:
        raise ValueError(f"optimizer.name must be 'sgd' or 'adamw', got {cfg.name!r}")

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict_logits(model: nn.Module, data: DeviceData, images: torch.Tensor,
                   batch_size: int = 1024) -> torch.Tensor:
    """Eval-mode float32 logits of uint8 ``images`` (no augmentation)."""
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        with _autocast(images.device):
            out.append(model(data.normalize(images[start:start + batch_size])).float())
    return torch.cat(out)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict:
    """Accuracy, top-5 accuracy, NLL and expected calibration error (Guo et al. 2017, Eq. 3)."""
    logp = F.log_softmax(logits.float(), dim=1)
    conf, pred = logp.exp().max(dim=1)
    correct = (pred == labels).float()
    k = min(5, logits.shape[1])
    top5 = (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).float()
    bin_id = torch.clamp((conf * bins).long(), max=bins - 1)
    gap = torch.zeros(bins, device=logits.device).index_add_(0, bin_id, conf - correct)
    ece = gap.abs().sum() / labels.numel()
    return {"test_acc": correct.mean().item(), "test_top5": top5.mean().item(),
            "test_nll": F.nll_loss(logp, labels).item(), "test_ece": ece.item()}


def evaluate(model: nn.Module, data: DeviceData) -> dict:
    """Test-split metrics of ``model``."""
    return classification_metrics(predict_logits(model, data, data.test_x), data.test_y)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


def train_model(
    model: nn.Module,
    data: DeviceData,
    indices: np.ndarray,
    loss_cfg: LossConfig,
    optim: OptimConfig,
    budget: Budget,
    seed: int,
    teacher: TeacherSignal | None = None,
    weights: np.ndarray | None = None,
    hooks: Hooks | None = None,
    augment: bool = True,
) -> TrainResult:
    """Train ``model`` on ``data.train_x[indices]`` under ``loss_cfg``; report test metrics."""
    hooks = hooks or Hooks()
    dev = data.device
    torch.manual_seed(seed)
    sel = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=dev)
    n = sel.numel()
    w_all = None if weights is None else torch.as_tensor(weights, dtype=torch.float32, device=dev)
    bs, spe, total, report_epochs = plan_steps(n, optim, budget)
    if loss_cfg.needs_teacher and (teacher is None or (
            teacher.fixed_logits is None and teacher.view_logits is None)):
        raise ValueError(f"label_mode {loss_cfg.mode!r} needs teacher logits")
    fixed = None
    if loss_cfg.needs_teacher and teacher.fixed_logits is not None and loss_cfg.mode == "soft":
        fixed = teacher.fixed_logits.to(dev)[sel]
    per_view = loss_cfg.mode == "kd"
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt, sched = make_optimizer(model, optim, total)
    aug = data.augment if augment else type(data.augment)()
    np_idx = np.asarray(indices, dtype=np.int64)

    started = time.perf_counter()
    result = TrainResult(metrics={})
    step, loss_sum, seen = 0, torch.zeros((), device=dev), 0
    segment_logits: dict[int, torch.Tensor] = {}
    for epoch in range(report_epochs[-1]):
        if per_view and epoch not in segment_logits:
            nxt = next(e for e in report_epochs if e > epoch)
            seg = np.arange(epoch, nxt)
            got = torch.as_tensor(teacher.view_logits(seed, seg, np_idx), device=dev)
            segment_logits = {int(e): got[i] for i, e in enumerate(seg)}
        model.train()
        gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
        perm = torch.randperm(n, generator=gen).to(dev)
        dy, dx, flip = (torch.as_tensor(a, device=dev)
                        for a in view_params(seed, epoch, np_idx, aug))
        for b in range(spe):
            if step >= total:
                break
            pos = perm[b * bs:(b + 1) * bs]
            idx = sel[pos]
            x = data.train_x[idx]
            if aug.pad or aug.flip:
                x = augment_batch(x, dy[pos], dx[pos], flip[pos], aug.pad)
            x = data.normalize(x)
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            t_logits = fixed[pos] if fixed is not None else (
                segment_logits[epoch][pos] if per_view else None)
            with _autocast(dev):
                logits = model(x)
            loss = coreset_loss(loss_cfg, logits, data.train_y[idx], t_logits,
                                None if w_all is None else w_all[pos])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if hooks.on_batch is not None:
                hooks.on_batch(epoch, idx, logits.detach())
            loss_sum += loss.detach() * idx.numel()
            seen += idx.numel()
            step += 1
        if hooks.on_epoch_end is not None:
            hooks.on_epoch_end(epoch, model)
        if epoch + 1 in report_epochs:
            metrics = evaluate(model, data)
            metrics.update(train_loss=(loss_sum / max(seen, 1)).item(), step=step,
                           coreset_epochs=step / spe, epoch=len(result.curves) + 1,
                           final=epoch + 1 == report_epochs[-1])
            loss_sum.zero_()
            seen = 0
            result.curves.append(metrics)
            result.metrics = metrics
            if hooks.on_report is not None:
                hooks.on_report(dict(metrics))
    result.steps = step
    result.epochs_run = step / spe
    result.seconds = time.perf_counter() - started
    return result
