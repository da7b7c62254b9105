"""The training loop: a plain function of (model, data, indices, label source, evaluators).

Data sits on the device as uint8; batches are sliced by index and augmented on the device
with replayable views; the host is synchronised only at report points. Randomness comes
from explicit sources: the batch order and input noise from generators of (seed, epoch),
crops and flips from the view hash, and whatever the model itself draws (dropout) from the
student's own RNG state, swapped in for each report segment. Nothing global is seeded, so
several students can be trained side by side, interleaved, with the same results as alone.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from coretune.spec import AugmentSpec, BudgetSpec, OptimizerSpec
from coretune.train.augment import EpochViews, add_input_noise
from coretune.train.data import DeviceData
from coretune.train.evaluate import Evaluator, autocast, predict_logits
from coretune.train.labels import LabelSource
from coretune.train.mixing import batch_bounds, batch_slice, epoch_order, epoch_seed, mix_batches
from coretune.train.models import build_model


@dataclass
class Hooks:
    """Optional callbacks; ``on_report`` gets each report's metrics dict; ``on_step`` is
    called after each optimiser step with the number of steps done and the model (in
    train mode: a hook that evaluates must put it back with ``model.train()``)."""

    on_batch: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None
    on_epoch_end: Callable[[int, nn.Module], None] | None = None
    on_report: Callable[[dict], None] | None = None
    on_step: Callable[[int, nn.Module], None] | None = None


@dataclass
class TrainResult:
    metrics: dict
    curves: list[dict] = field(default_factory=list)
    steps: int = 0
    epochs_run: float = 0.0
    seconds: float = 0.0


class RngState:
    """A student's own global-RNG state (what dropout and friends draw from).

    ``with state:`` swaps it in for the duration and saves it back afterwards, leaving the
    process's RNG as it was, so interleaved students do not perturb one another.
    """

    def __init__(self, seed: int, device: torch.device):
        self.device = device
        self.cpu = torch.Generator().manual_seed(seed).get_state()
        self.cuda = None
        if device.type == "cuda":
            gen = torch.Generator(device=device).manual_seed(seed)
            self.cuda = gen.get_state()

    def __enter__(self) -> RngState:
        self._saved = torch.get_rng_state()
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            self._saved_cuda = torch.cuda.get_rng_state(self.device)
            torch.cuda.set_rng_state(self.cuda, self.device)
        return self

    def __exit__(self, *exc) -> None:
        self.cpu = torch.get_rng_state()
        torch.set_rng_state(self._saved)
        if self.cuda is not None:
            self.cuda = torch.cuda.get_rng_state(self.device)
            torch.cuda.set_rng_state(self._saved_cuda, self.device)


@contextmanager
def _seeded(seed: int, device: torch.device):
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def init_model(arch: str, args: dict, input_shape: tuple[int, int, int], num_classes: int,
               seed: int, device: torch.device | str) -> nn.Module:
    """Build ``arch`` initialised from ``seed`` (in a forked RNG: global state untouched)."""
    dev = torch.device(device)
    with _seeded(seed, dev):
        return build_model(arch, tuple(input_shape), num_classes, args).to(dev)


def budget_images(budget: BudgetSpec, dataset_size: int) -> int | None:
    """The training images ``budget`` asks for (``images``, ``full_epochs`` × the full
    split's size), or None for a budget in epochs or iterations of the set trained on."""
    if budget.unit == "images":
        return int(budget.value)
    if budget.unit == "full_epochs":
        return max(1, round(budget.value * dataset_size))
    return None


def plan_steps(n: int, optim: OptimizerSpec, budget: BudgetSpec,
               dataset_size: int | None = None) -> tuple[int, int, int, list[int]]:
    """(batch size, steps per epoch, total steps, epochs after which to report) of training
    on ``n`` samples of a training split of ``dataset_size`` (default ``n``).

    An epoch's last batch never holds a single sample (BatchNorm cannot train on one):
    when ``n % batch_size == 1`` that sample joins the batch before it. A budget in images
    (or full-data epochs) becomes the fewest steps whose batches hold that many images:
    whole epochs of ``n``, then full batches of the next (within one batch of the target)."""
    bs, spe = batch_bounds(n, optim.batch_size)
    images = budget_images(budget, n if dataset_size is None else dataset_size)
    if images is not None:
        epochs, rest = divmod(images, n)
        total = max(1, epochs * spe + min(spe, math.ceil(rest / bs)))
    else:
        total = int(budget.value) * spe if budget.unit == "epochs" else int(budget.value)
    n_epochs = math.ceil(total / spe)
    n_reports = max(1, min(n_epochs, budget.max_reports))
    report_epochs = sorted({int(round(e)) for e in np.linspace(n_epochs / n_reports, n_epochs,
                                                                n_reports)})
    return bs, spe, total, report_epochs


def train_mode(model: nn.Module, n: int) -> None:
    """``model.train()`` for training on ``n`` samples; on one sample its BatchNorm layers
    stay in eval mode and normalise with their running statistics (a batch of one image
    has no batch variance: BatchNorm cannot train on it)."""
    model.train()
    if n < 2:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


#: glibc ``mallopt`` parameters and the values :func:`retain_freed_memory` sets
_MALLOPT = {"M_TRIM_THRESHOLD": (-1, 256 << 20), "M_TOP_PAD": (-2, 64 << 20),
            "M_MMAP_THRESHOLD": (-3, 32 << 20)}
_heap_retained = False


def retain_freed_memory() -> bool:
    """Make glibc's allocator keep freed memory for reuse (once per process; False where
    the C library has no ``mallopt``). Training on a CPU frees and reallocates the same
    megabyte-sized tensors every step (gradients, optimiser temporaries); glibc by default
    maps blocks that large afresh and trims the heap when they are freed, so every step
    page-faults its tensors in again: 345 page faults per step of 8 fused digits MLPs (a
    fifth of its CPU time). Up to 256 MB stays mapped instead (what jemalloc or
    tcmalloc, as PyTorch's CPU tuning guide recommends, would do); numerics unchanged."""
    global _heap_retained
    if not _heap_retained:
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (AttributeError, OSError, TypeError):  # no C library or no mallopt
            return False
        _heap_retained = all(mallopt(param, value) == 1 for param, value in _MALLOPT.values())
    return _heap_retained


def prepare_device(device: torch.device) -> None:
    """Per-process settings for training on ``device``: on CUDA, cuDNN autotuning
    (``cudnn.benchmark``: a student's batch shapes repeat every step, so the fastest
    convolution kernels are chosen once per shape; off by default in torch, and in the
    anchors' code); on a CPU, :func:`retain_freed_memory`."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        retain_freed_memory()


def compile_mode_for(mode: str | None, device: torch.device | str) -> str | None:
    """The ``torch.compile`` mode a solo student runs under: ``auto`` is ``reduce-overhead``
    (CUDA graphs: a small student's step is kernel-launch bound, 2.8-3.6x eager on an H200
    in bench/train_throughput.py) on CUDA and nothing elsewhere (on a CPU inductor's
    compilation costs more than short students win)."""
    if mode == "auto":
        return "reduce-overhead" if torch.device(device).type == "cuda" else None
    return mode


def compile_student(model: nn.Module, mode: str | None, device: torch.device | str
                    ) -> nn.Module:
    """``model`` through ``torch.compile`` with :func:`compile_mode_for`'s mode (itself if
    none). Under ``auto`` a graph the compiler cannot handle falls back to eager (dynamo's
    ``suppress_errors``) instead of failing the trial; a mode asked for by name fails."""
    resolved = compile_mode_for(mode, device)
    if resolved is None:
        return model
    if mode == "auto":
        from torch._dynamo import config as dynamo_config

        dynamo_config.suppress_errors = True
    # static shapes: an epoch's short last batch gets a graph of its own instead of turning
    # every batch's graph dynamic (and re-recording its CUDA graphs)
    return torch.compile(model, mode=None if resolved == "default" else resolved,
                         dynamic=False)


def images_seen(n: int, batch_size: int, steps_per_epoch: int, steps: int) -> int:
    """Images a run of ``steps`` steps over ``n`` samples sees (whole epochs of ``n``, then
    the next epoch's first batches, which are full: only an epoch's last batch is short)."""
    epochs, rest = divmod(steps, steps_per_epoch)
    return epochs * n + rest * batch_size


def make_optimizer(model: nn.Module | Sequence[torch.Tensor], cfg: OptimizerSpec,
                   total_steps: int, stacked: int = 0):
    """Optimiser and per-step LR scheduler (norms and biases decay only if asked).

    ``model`` may be a list of parameters; ``stacked`` leading dimensions (the students of a
    fused model) are not counted when telling weights (ndim > 1) from norms and biases."""
    params = list(model.parameters()) if isinstance(model, nn.Module) else list(model)
    if cfg.decay_norm_and_bias:
        groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    else:
        groups = [{"params": [p for p in params if p.ndim - stacked > 1],
                   "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.ndim - stacked <= 1],
                   "weight_decay": 0.0}]
    # one fused kernel per parameter group on CUDA (a small student's step is launch bound)
    # and for stacked students on a CPU (their tensors are K times a student's: the
    # per-tensor path's temporaries and passes over them cost more than the kernel's one)
    device = params[0].device.type if params else "cpu"
    kernel = {"fused": True} if device == "cuda" or (stacked and device == "cpu") else {}
    if cfg.name == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                              nesterov=cfg.nesterov and cfg.momentum > 0, **kernel)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr, **kernel)

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "step":
            return cfg.decay_factor if step >= cfg.decay_at * total_steps else 1.0
        progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_steps(
    model: nn.Module,
    data: DeviceData,
    indices: np.ndarray,
    labels: LabelSource,
    evaluators: Sequence[Evaluator],
    budget: BudgetSpec,
    optimizer: OptimizerSpec,
    seed: int,
    augment: AugmentSpec | None = None,
    weights: np.ndarray | None = None,
    hooks: Hooks | None = None,
    rng: RngState | None = None,
) -> Iterator[dict]:
    """Train ``model`` on ``data.train_x[indices]``; yield each report's metrics.

    ``labels`` gives the loss of a batch (hard, smoothed, teacher, pseudo-labels, …);
    ``evaluators`` score the model at each report (``<split>_acc`` etc.). A generator, so
    a trial can interleave several students report by report. A loss that becomes NaN or
    inf ends training at the next report, which carries ``diverged_at_step``. With
    ``augment.cutmix`` each batch is mixed within itself (:mod:`coretune.train.mixing`) and
    the label source's loss gets the :class:`~coretune.train.mixing.BatchMix` (``mix=``).
    """
    hooks = hooks or Hooks()
    dev = data.device
    aug = augment if augment is not None else data.augment
    rng = rng or RngState(seed, dev)
    if aug.cutmix is not None and hooks.on_batch is not None:
        raise ValueError("per-sample batch outputs (on_batch) of CutMix views would mix two "
                         "samples: a recording run takes no cutmix")
    np_idx = np.array(indices, dtype=np.int64)  # a writable copy (torch shares its memory)
    sel = torch.as_tensor(np_idx, device=dev)
    n = sel.numel()
    w_all = None if weights is None else torch.tensor(np.asarray(weights), dtype=torch.float32,
                                                       device=dev)
    bs, spe, total, report_epochs = plan_steps(n, optimizer, budget, data.full_split_size)
    labels.bind(sel, seed)
    prepare_device(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt, sched = make_optimizer(model, optimizer, total)

    step, seen, n_reports = 0, 0, 0
    loss_sum = torch.zeros((), device=dev)
    first_bad = torch.full((), -1, dtype=torch.int64, device=dev)  # first non-finite step
    seg_start = 0
    for report_epoch in report_epochs:
        started = time.perf_counter()
        labels.begin_segment(seed, np.arange(seg_start, report_epoch), np_idx)
        with rng:
            for epoch in range(seg_start, report_epoch):
                train_mode(model, n)
                perm_host = epoch_order(seed, epoch, n)
                perm = perm_host.to(dev)
                views = EpochViews(seed, epoch, np_idx, aug, dev)
                for b in range(spe):
                    if step >= total:
                        break
                    batch = batch_slice(b, bs, spe, n)
                    pos, pos_host = perm[batch], perm_host[batch].numpy()
                    idx = sel[pos]
                    x = views(data.train_x[idx], pos, pos_host)
                    mix = None
                    if aug.cutmix is not None:
                        x, mix = mix_batches(x, views.keys[pos_host][None], [seed], epoch, b,
                                             aug.cutmix)
                        mix = mix.row(0)
                    x = add_input_noise(data.normalize(x), aug.noise_std, seed, epoch, b)
                    if dev.type == "cuda":
                        x = x.contiguous(memory_format=torch.channels_last)
                    with autocast(dev):
                        logits = model(x)
                    w = None if w_all is None else w_all[pos]
                    loss = (labels.loss(logits, idx, pos, epoch, w) if mix is None else
                            labels.loss(logits, idx, pos, epoch, w, mix=mix))
                    bad = ~torch.isfinite(loss.detach()) & (first_bad < 0)
                    first_bad = torch.where(bad, step, first_bad)  # no host sync
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    if hooks.on_batch is not None:
                        hooks.on_batch(epoch, idx, logits.detach())
                    loss_sum += loss.detach() * idx.numel()
                    seen += idx.numel()
                    step += 1
                    if hooks.on_step is not None:
                        hooks.on_step(step, model)
                if hooks.on_epoch_end is not None:
                    hooks.on_epoch_end(epoch, model)
        metrics: dict = {}
        for ev in evaluators:
            metrics.update(ev.evaluate(model, data.normalize))
        n_reports += 1
        diverged_at = int(first_bad.item())
        metrics.update(train_loss=(loss_sum / max(seen, 1)).item(), step=step,
                       coreset_epochs=step / spe, epoch=n_reports,
                       final=report_epoch == report_epochs[-1] and diverged_at < 0,
                       diverged_at_step=diverged_at if diverged_at >= 0 else None,
                       segment_seconds=time.perf_counter() - started)
        loss_sum.zero_()
        seen = 0
        seg_start = report_epoch
        if hooks.on_report is not None:
            hooks.on_report(dict(metrics))
        yield metrics
        if diverged_at >= 0:  # a NaN/inf loss: stop; the row says where
            return


def train(model: nn.Module, data: DeviceData, indices: np.ndarray, labels: LabelSource,
          evaluators: Sequence[Evaluator], budget: BudgetSpec, optimizer: OptimizerSpec,
          seed: int, **kw) -> TrainResult:
    """Run :func:`train_steps` to the end; the curves and the final metrics."""
    started = time.perf_counter()
    result = TrainResult(metrics={})
    for metrics in train_steps(model, data, indices, labels, evaluators, budget, optimizer,
                               seed, **kw):
        result.curves.append(metrics)
        result.metrics = metrics
    result.steps = int(result.metrics.get("step", 0))
    result.epochs_run = float(result.metrics.get("coreset_epochs", 0.0))
    result.seconds = time.perf_counter() - started
    return result


__all__ = ["Hooks", "RngState", "TrainResult", "autocast", "budget_images",
           "compile_mode_for", "compile_student", "epoch_seed", "images_seen", "init_model",
           "make_optimizer", "prepare_device", "retain_freed_memory",
           "plan_steps", "predict_logits", "train", "train_mode", "train_steps"]
