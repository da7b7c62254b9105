"""Fused students: K students of one configuration trained as one vectorised model.

The students of a Tune group that differ only by seed (same architecture, batch size,
step count and optimiser) are stacked with :func:`torch.func.stack_module_state` and run
through ``vmap`` over :func:`torch.func.functional_call` — a per-student batch dimension in
front of every parameter, BatchNorm buffer and input, which PyTorch lowers to grouped
convolutions and batched matrix products (the idea of HFTA, Wang et al., MLSys 2021, done
by ``vmap`` rather than by hand-written grouped layers). Each student keeps its own
parameters, BatchNorm statistics (updated in place in its slice of the stacked buffers),
batch order, coreset (any size that gives the same step plan), label source, weights,
crops and CutMix partners (within its own batch), all drawn exactly as
:func:`coretune.train.loop.train_steps` draws them; so at
step 0 a fused student's outputs, loss and gradients are the solo student's to float
tolerance, and with deterministic kernels its whole run is too (tests check both).

The one thing that cannot be the solo run's is what the model itself draws (dropout):
``vmap(randomness="different")`` draws every student's masks from one RNG, the first
student's :class:`~coretune.train.loop.RngState`. Models without such draws (the
packaged MLP, small CNN, ResNets and VGG) are unaffected.

Cost: one forward and backward of a K-wide model per step instead of K small ones, and
one optimiser step over stacked tensors (SGD and AdamW are element-wise, so each student's
update is its own); gathering and augmenting the batches is one call over K·B images.
The loss of each student is its own label source's, summed, so the gradient of each
student's parameters is its own loss's gradient. A student whose loss turns NaN or inf
gets its ``diverged_at_step`` report and stops being reported; the others go on (their
gradients never see its loss).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.func import functional_call, stack_module_state, vmap

from coretune.spec import AugmentSpec, BudgetSpec, OptimizerSpec
from coretune.train.augment import EpochViews, add_input_noise, make_views
from coretune.train.data import DeviceData
from coretune.train.evaluate import Evaluator, autocast
from coretune.train.labels import LabelSource, stacked_losses
from coretune.train.loop import (
    RngState,
    make_optimizer,
    plan_steps,
    prepare_device,
    train_mode,
)
from coretune.train.mixing import batch_slice, epoch_order, mix_batches


@dataclass
class FusedStudent:
    """One student of a fused group: its initialised model, coreset, labels and seed."""

    model: nn.Module
    indices: np.ndarray
    labels: LabelSource
    seed: int
    weights: np.ndarray | None = None


def step_plan(n_selected: int, optimizer: OptimizerSpec, budget: BudgetSpec,
              dataset_size: int | None = None) -> tuple:
    """What must be equal for students to fuse: batch size, steps per epoch, total steps
    and report epochs (:func:`~coretune.train.loop.plan_steps` of the coreset size)."""
    bs, spe, total, reports = plan_steps(n_selected, optimizer, budget, dataset_size)
    return bs, spe, total, tuple(reports)


def _float32_norm(cls: type) -> type:
    """``cls`` (a BatchNorm class) normalising in float32 and returning the input's dtype:
    under bf16 autocast, vmap's batch-norm rule refuses bf16 inputs with float32 running
    statistics (cuDNN's own kernel takes them, so the solo path needs no cast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cls.forward(self, x.float()).to(x.dtype)

    return type(f"Float32{cls.__name__}", (cls,), {"forward": forward})


class StackedModel:
    """K copies of one architecture as stacked tensors, called on ``[K, B, …]`` inputs.

    ``leaves`` are the tensors the optimiser updates. A linear layer's weight is kept as
    its transpose, ``[K, in, out]`` contiguous, and handed to the layer as a view: under
    ``vmap`` the layer multiplies by ``weight.mT``, so the batched product reads a
    contiguous operand and the weight's gradient comes out in the leaf's own layout (kept
    ``[K, out, in]``, every step's gradient would be a transposed copy: a strided copy and
    strided weight decay that cost a fused MLP step more than its matrix products on a
    CPU). ``params`` and :meth:`grads` give each parameter in its module's layout."""

    def __init__(self, models: Sequence[nn.Module]):
        self.template = copy.deepcopy(models[0]).to("meta")
        for module in self.template.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.__class__ = _float32_norm(type(module))
        params, self.buffers = stack_module_state(list(models))
        self.transposed = {f"{name}.weight" if name else "weight"
                           for name, m in self.template.named_modules()
                           if isinstance(m, nn.Linear)}
        self.leaves = {k: (v.detach().mT.contiguous() if k in self.transposed else
                           v.detach()).requires_grad_(True) for k, v in params.items()}
        self.k = len(models)

        def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.template, (p, b), (x,))

        self._call = vmap(one, randomness="different")

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """Every parameter, stacked, in its module's layout (views of ``leaves``)."""
        return {k: v.mT if k in self.transposed else v for k, v in self.leaves.items()}

    def grads(self) -> dict[str, torch.Tensor | None]:
        """Every parameter's gradient, stacked, in its module's layout."""
        return {k: None if v.grad is None else v.grad.mT if k in self.transposed else v.grad
                for k, v in self.leaves.items()}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._call(self.params, self.buffers, x)

    def train(self, mode: bool = True) -> None:
        self.template.train(mode)

    @torch.no_grad()
    def unstack_into(self, k: int, model: nn.Module) -> nn.Module:
        """Copy student ``k``'s parameters and buffers into ``model`` (its own module)."""
        params = self.params
        for name, p in model.named_parameters():
            p.copy_(params[name][k])
        for name, b in model.named_buffers():
            b.copy_(self.buffers[name][k])
        return model


def train_fused(students: Sequence[FusedStudent], data: DeviceData,
                evaluators: Sequence[Evaluator], budget: BudgetSpec, optimizer: OptimizerSpec,
                augment: AugmentSpec | None = None) -> Iterator[list[dict | None]]:
    """Train ``students`` together; yield, at each report, one metrics dict per student
    (``None`` for a student that stopped at an earlier report), with the same fields as
    :func:`~coretune.train.loop.train_steps`'s reports."""
    plans = {step_plan(len(s.indices), optimizer, budget, data.full_split_size)
             for s in students}
    if len(plans) != 1:
        raise ValueError(f"fused students need one step plan, got {sorted(plans)}")
    bs, spe, total, report_epochs = plans.pop()
    dev, k = data.device, len(students)
    aug = augment if augment is not None else data.augment
    rng = RngState(students[0].seed, dev)
    idx_host = [np.array(s.indices, dtype=np.int64) for s in students]
    sel = torch.stack([torch.as_tensor(i, device=dev) for i in idx_host])  # [K, n]
    n = sel.shape[1]
    w_all = None
    if any(s.weights is not None for s in students):
        w_all = torch.stack([torch.as_tensor(np.ones(n) if s.weights is None else s.weights,
                                             dtype=torch.float32, device=dev)
                             for s in students])
    for s, row in zip(students, sel, strict=True):
        s.labels.bind(row, s.seed)
    stacked = StackedModel([s.model for s in students])
    sources = [s.labels for s in students]
    prepare_device(dev)
    opt, sched = make_optimizer(list(stacked.leaves.values()), optimizer, total, stacked=1)
    active = [True] * k
    step, seen = 0, 0
    loss_sum = torch.zeros(k, device=dev)
    first_bad = torch.full((k,), -1, dtype=torch.int64, device=dev)
    students_axis = torch.arange(k, device=dev)[:, None]
    seg_start, n_reports = 0, 0
    for report_epoch in report_epochs:
        started = time.perf_counter()
        for s, idx in zip(students, idx_host, strict=True):
            s.labels.begin_segment(s.seed, np.arange(seg_start, report_epoch), idx)
        with rng:
            for epoch in range(seg_start, report_epoch):
                train_mode(stacked.template, n)
                perm_host = torch.stack([epoch_order(s.seed, epoch, n)
                                         for s in students])  # [K, n]
                perm = perm_host.to(dev)
                views = [EpochViews(s.seed, epoch, i, aug, dev)
                         for s, i in zip(students, idx_host, strict=True)]
                dy, dx, flip = (torch.stack([getattr(v, a) for v in views])
                                for a in ("dy", "dx", "flip"))
                keys = np.stack([v.keys for v in views])
                for b in range(spe):
                    if step >= total:
                        break
                    batch = batch_slice(b, bs, spe, n)
                    pos, pos_host = perm[:, batch], perm_host[:, batch].numpy()  # [K, B]
                    idx = sel[students_axis, pos]
                    flat = idx.reshape(-1)
                    x = data.train_x[flat]
                    batch_keys = keys[np.arange(k)[:, None], pos_host]
                    if aug.pad or aug.flip or aug.ops:
                        x = make_views(x, dy[students_axis, pos].reshape(-1),
                                       dx[students_axis, pos].reshape(-1),
                                       flip[students_axis, pos].reshape(-1),
                                       batch_keys.reshape(-1), aug)
                    mix = None
                    if aug.cutmix is not None:  # each student's views mixed in its own batch
                        x, mix = mix_batches(x, batch_keys, [s.seed for s in students], epoch,
                                             b, aug.cutmix)
                    x = data.normalize(x).reshape(k, -1, *x.shape[1:])
                    if aug.noise_std > 0:
                        x = torch.stack([add_input_noise(x[j], aug.noise_std, s.seed, epoch, b)
                                         for j, s in enumerate(students)])
                    with autocast(dev):
                        logits = stacked(x)
                    losses = stacked_losses(sources, logits, idx, pos, epoch,
                                            None if w_all is None else w_all[students_axis, pos],
                                            mix)
                    bad = ~torch.isfinite(losses.detach()) & (first_bad < 0)
                    first_bad = torch.where(bad, step, first_bad)
                    opt.zero_grad(set_to_none=True)
                    losses.sum().backward()
                    opt.step()
                    sched.step()
                    loss_sum += losses.detach() * idx.shape[1]
                    seen += idx.shape[1]
                    step += 1
        n_reports += 1
        diverged = first_bad.tolist()
        train_loss = (loss_sum / max(seen, 1)).tolist()
        out: list[dict | None] = []
        for j, s in enumerate(students):
            if not active[j]:
                out.append(None)
                continue
            metrics: dict = {}
            model = stacked.unstack_into(j, s.model)
            for ev in evaluators:
                metrics.update(ev.evaluate(model, data.normalize))
            bad_at = diverged[j]
            metrics.update(train_loss=train_loss[j], step=step, coreset_epochs=step / spe,
                           epoch=n_reports,
                           final=report_epoch == report_epochs[-1] and bad_at < 0,
                           diverged_at_step=bad_at if bad_at >= 0 else None,
                           segment_seconds=time.perf_counter() - started, fused=k)
            active[j] = bad_at < 0
            out.append(metrics)
        loss_sum.zero_()
        seen, seg_start = 0, report_epoch
        yield out
        if not any(active):
            return


__all__ = ["FusedStudent", "StackedModel", "step_plan", "train_fused"]
