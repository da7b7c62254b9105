"""Benchmark: student training throughput against the anchors' pipeline, in one process.

Same device, same data shape, same model definition (coretune's), same optimiser (SGD,
momentum 0.9, Nesterov, weight decay 5e-4); only the way of training differs:

(a) **anchor** — the pipeline of DeepCore, CCS, D² and the soft-label paper's code: a
    ``torch.utils.data.DataLoader`` (4 workers, pinned memory when on CUDA, new workers
    each epoch as they do) over PIL images, ``RandomCrop(size, pad)`` + flip + ``ToTensor``
    + ``Normalize`` per image, fp32, eager;
(b) **coretune** — :func:`coretune.train.loop.train_steps` as a sweep runs it: uint8 data
    on the device, batched on-device crops and flips, bf16 autocast, channels_last, fused
    optimiser kernels and ``compile: auto`` (``torch.compile`` ``reduce-overhead``, i.e.
    CUDA graphs) on CUDA; also **(b) eager**, the same without compilation, where ``auto``
    compiles;
(c) **packed P** — P processes training (b) at once on the device (what fractional GPUs
    do), aggregate images per second;
(d) **fused K** — :func:`coretune.train.fused.train_fused`, K students as one model.

Workloads: the digits-space MLP (8×8×1, batch 32), the Fashion-MNIST small CNN (28×28×1,
batch 64) and ResNet-18 with the CIFAR stem (32×32×3, 100 classes, batch 128), on
random uint8 images of those shapes (throughput does not depend on content); each trains
on a coreset (10 % of the dataset's size) for whole epochs. Reported: images per second
(the median of ``--repeat`` measurements, 3 by default, and their spread),
its ratio to (a), model FLOP/s from ``torch.utils.flop_counter`` (forward + backward per
image × images per second) and, where the device's peak is known, model FLOP
utilisation against its dense bf16 peak; on CUDA, peak memory per fused K.

Run: ``python bench/train_throughput.py`` (small settings, a few minutes on 2 CPU cores)
or ``python bench/train_throughput.py --full`` on a GPU (needs torch, torchvision,
pydantic; not Ray). Results go to bench/RESULTS.md, naming the device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coretune.spec import AugmentSpec, BudgetSpec, OptimizerSpec  # noqa: E402
from coretune.train.data import ImageDataset, to_device  # noqa: E402
from coretune.train.fused import FusedStudent, train_fused  # noqa: E402
from coretune.train.labels import HardLabels  # noqa: E402
from coretune.train.loop import (  # noqa: E402
    Hooks,
    compile_mode_for,
    compile_student,
    init_model,
    plan_steps,
    train,
)

#: dense bf16 peak FLOP/s by device name (vendor datasheets; H100/H200 SXM)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


@dataclass(frozen=True)
class Workload:
    name: str
    arch: str
    shape: tuple[int, int, int]
    classes: int
    n_train: int  # the dataset's training size; the coreset is 10 % of it
    batch: int
    pad: int
    flip: bool
    epochs: int  # timed epochs (after one warm-up epoch)


CPU_WORKLOADS = [
    Workload("digits MLP", "mlp", (1, 8, 8), 10, 14_370, 32, 1, False, 12),
    Workload("Fashion-MNIST small CNN", "small_cnn", (1, 28, 28), 10, 12_000, 64, 2, True, 1),
    Workload("CIFAR-100 ResNet-18", "resnet18", (3, 32, 32), 100, 2_560, 128, 4, True, 1),
]
GPU_WORKLOADS = [
    Workload("digits MLP", "mlp", (1, 8, 8), 10, 14_370, 32, 1, False, 10),
    Workload("Fashion-MNIST small CNN", "small_cnn", (1, 28, 28), 10, 60_000, 64, 2, True, 4),
    Workload("CIFAR-100 ResNet-18", "resnet18", (3, 32, 32), 100, 50_000, 128, 4, True, 3),
]


def dataset(w: Workload) -> ImageDataset:
    rng = np.random.default_rng(0)
    n = w.n_train // 10
    x = rng.integers(0, 256, (n, *w.shape), dtype=np.uint8)
    y = rng.integers(0, w.classes, n).astype(np.int64)
    return ImageDataset(w.name, x, y, x[:2], y[:2], w.classes, AugmentSpec(pad=w.pad,
                                                                          flip=w.flip))


def optimizer(w: Workload) -> OptimizerSpec:
    return OptimizerSpec(name="sgd", lr=0.05, momentum=0.9, nesterov=True,
                         weight_decay=5e-4, batch_size=w.batch)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------- (a) the anchor
class _PilDataset(torch.utils.data.Dataset):
    """A torchvision-style dataset: HWC uint8 arrays, a PIL image per item, then the
    transform (as ``torchvision.datasets.CIFAR100.__getitem__`` does)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform):
        self.x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        self.y, self.transform = y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image
        img = self.x[i]
        img = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        return self.transform(img), int(self.y[i])


def anchor(w: Workload, device: torch.device) -> float:
    """Images per second of DeepCore's training loop (timed epochs after a warm-up one), in
    a fresh process: one that has run coretune's path keeps freed memory in its heap
    (:func:`~coretune.train.loop.retain_freed_memory`), which DeepCore's does not."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_anchor_worker, args=(w, str(device), torch.get_num_threads(),
                                                    mp.get_start_method(), queue))
    proc.start()
    rate = queue.get()
    proc.join()
    return rate


def _anchor_worker(w: Workload, device: str, threads: int, start_method: str, queue) -> None:
    # a spawned process defaults to spawning its own children: the DataLoader's workers
    # start as they would in the anchors' own process (fork on Linux), not from nothing
    mp.set_start_method(start_method, force=True)
    torch.set_num_threads(threads)
    queue.put(_anchor_loop(w, torch.device(device)))


def _anchor_loop(w: Workload, device: torch.device) -> float:
    import torchvision.transforms as T
    torch.backends.cudnn.benchmark = False  # torch's default, which DeepCore keeps
    ds = dataset(w)
    ops = [T.RandomCrop(w.shape[1], padding=w.pad)]
    if w.flip:
        ops.append(T.RandomHorizontalFlip())
    ops += [T.ToTensor(), T.Normalize(ds.mean.tolist(), ds.std.tolist())]
    data = _PilDataset(ds.train_x, ds.train_y, T.Compose(ops))
    model = init_model(w.arch, {}, w.shape, w.classes, 0, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    seen, started = 0, None
    for epoch in range(w.epochs + 1):
        if epoch == 1:
            sync(device)
            started, seen = time.perf_counter(), 0
        loader = torch.utils.data.DataLoader(data, batch_size=w.batch, shuffle=True,
                                             num_workers=4, pin_memory=device.type == "cuda")
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
    sync(device)
    return seen / (time.perf_counter() - started)


# ------------------------------------------------------------------ (b) coretune, (d) fused
def _timed_epochs(w: Workload, run) -> float:
    """Images per second of ``run(epochs)``: the difference of a (1 + E)- and a 1-epoch run,
    so set-up and the first epoch's warm-up cancel, after a discarded 1-epoch run (cuDNN's
    autotuning of each new shape would otherwise fall in the 1-epoch run alone)."""
    n = w.n_train // 10
    run(1)
    t1 = run(1)
    t2 = run(1 + w.epochs)
    return w.epochs * n / max(t2 - t1, 1e-9)


def coretune_path(w: Workload, device: torch.device, data=None,
                  compile_mode: str | None = "auto") -> float:
    """Images per second of :func:`~coretune.train.loop.train` over the epochs after the
    first (timed from the end of epoch 1, by the loop's step hook), one run; the student
    compiled as a sweep's would be with ``compile_mode`` (the warm-up epoch holds the
    compilation)."""
    images, started, ended = _coretune_timed(w, device, data, compile_mode)
    return images / (ended - started)


def _coretune_timed(w: Workload, device: torch.device, data=None,
                    compile_mode: str | None = "auto", barrier=None
                    ) -> tuple[int, float, float]:
    """(images trained after the warm-up epoch, when they started, when they ended); with
    ``barrier``, every process waits there after its warm-up, so packed processes time
    the same interval whatever their compilation took."""
    data = data or to_device(dataset(w), device)
    idx = np.arange(data.train_y.numel())
    budget = BudgetSpec(unit="epochs", value=1 + w.epochs, max_reports=1)
    _, spe, _, _ = plan_steps(len(idx), optimizer(w), budget)
    model = init_model(w.arch, {}, w.shape, w.classes, 0, device)
    model = compile_student(model, compile_mode, device)
    marks: list[float] = []

    def on_step(step: int, _model) -> None:
        if step == spe:
            sync(device)
            if barrier is not None:
                barrier.wait()
            marks.append(time.perf_counter())

    train(model, data, idx, HardLabels(data.train_y), [], budget, optimizer(w), 0,
          hooks=Hooks(on_step=on_step))
    sync(device)
    return w.epochs * len(idx), marks[0], time.perf_counter()


def fused_path(w: Workload, device: torch.device, k: int) -> tuple[float, float | None]:
    data = to_device(dataset(w), device)
    idx = np.arange(data.train_y.numel())
    peak: list[float] = []

    def run(epochs: int) -> float:
        students = [FusedStudent(init_model(w.arch, {}, w.shape, w.classes, s, device), idx,
                                 HardLabels(data.train_y), s) for s in range(k)]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        started = time.perf_counter()
        for _ in train_fused(students, data, [], BudgetSpec(unit="epochs", value=epochs,
                                                            max_reports=1), optimizer(w)):
            pass
        sync(device)
        if device.type == "cuda":
            peak.append(torch.cuda.max_memory_allocated(device) / 2**30)
        return time.perf_counter() - started

    return k * _timed_epochs(w, run), (max(peak) if peak else None)


# -------------------------------------------------------------------------- (c) packed
def _packed_worker(w: Workload, device: str, threads: int, barrier, queue) -> None:
    torch.set_num_threads(threads)
    dev = torch.device(device)
    data = to_device(dataset(w), dev)
    queue.put(_coretune_timed(w, dev, data, barrier=barrier))


def packed(w: Workload, device: torch.device, p: int) -> float:
    """Aggregate images per second of ``p`` processes each training (b) at once: every
    process starts its timed epochs together (a barrier after its warm-up and
    compilation); all their images over the span from that start to the last one's end
    (``time.perf_counter`` is the system's monotonic clock, shared by the processes)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(p), ctx.Queue()
    threads = max(1, torch.get_num_threads() // p)
    procs = [ctx.Process(target=_packed_worker, args=(w, str(device), threads, barrier, queue))
             for _ in range(p)]
    for proc in procs:
        proc.start()
    timed = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    images = sum(n for n, _, _ in timed)
    return images / (max(end for _, _, end in timed) - min(start for _, start, _ in timed))


# --------------------------------------------------------------------------------- FLOPs
def flops_per_image(w: Workload) -> float:
    """Forward + backward FLOPs per image (``torch.utils.flop_counter``), on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode
    model = init_model(w.arch, {}, w.shape, w.classes, 0, "cpu")
    x = torch.randn(8, *w.shape)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="GPU settings (full epochs)")
    parser.add_argument("--only", default="", help="workload names containing this")
    parser.add_argument("--packed", default="2,4,8", help="process counts for (c)")
    parser.add_argument("--fused", default="4,8", help="K for (d)")
    parser.add_argument("--compile", default="",
                        help="torch.compile modes to add as (b) variants: default,"
                             "reduce-overhead,max-autotune")
    parser.add_argument("--no-anchor-pipelines", action="store_true",
                        help="skip (a) and (b) (ratios then relative to the first path)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measure each path this many times; the table gives the median "
                             "and the spread ((max - min) / median)")
    parser.add_argument("--json", default="", help="write the numbers here too")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    workloads = [w for w in (GPU_WORKLOADS if args.full else CPU_WORKLOADS)
                 if args.only.lower() in w.name.lower()]
    rows = []
    for w in workloads:
        flops = flops_per_image(w)
        paths = [] if args.no_anchor_pipelines else [
            ("(a) anchor", lambda w=w: (anchor(w, device), None)),
            ("(b) coretune", lambda w=w: (coretune_path(w, device), None))]
        if compile_mode_for("auto", device) is not None and not args.no_anchor_pipelines:
            paths.append(("(b) eager", lambda w=w: (coretune_path(w, device, None, None),
                                                    None)))
        paths += [(f"(b) + compile {m}", lambda w=w, m=m: (coretune_path(w, device, None, m),
                                                          None))
                  for m in filter(None, args.compile.split(","))]
        paths += [(f"(c) packed {p}", lambda w=w, p=p: (packed(w, device, p), None))
                  for p in map(int, filter(None, args.packed.split(",")))]
        paths += [(f"(d) fused {k}", lambda w=w, k=k: fused_path(w, device, k))
                  for k in map(int, filter(None, args.fused.split(",")))]
        base = None
        for label, measure in paths:
            try:
                runs = [measure() for _ in range(args.repeat)]
            except Exception as err:  # one broken path must not cost the others' numbers
                print(f"{w.name} {label}: {type(err).__name__}: {err}", flush=True)
                continue
            rates = sorted(rate for rate, _ in runs)
            rate = float(np.median(rates))
            mems = [mem for _, mem in runs if mem is not None]
            base = base or rate
            rows.append({"workload": w.name, "path": label, "images_per_s": rate,
                         "runs": rates, "spread": (rates[-1] - rates[0]) / rate,
                         "vs_anchor": rate / base, "tflops": rate * flops / 1e12,
                         "mfu": rate * flops / peak if peak else None,
                         "peak_gib": max(mems) if mems else None})
            print(json.dumps(rows[-1]), flush=True)
    lines = [f"## train_throughput ({time.strftime('%Y-%m-%d')}, {name}, torch "
             f"{torch.__version__}{', --full' if args.full else ''}, median of "
             f"{args.repeat})", "",
             "| workload | path | images/s | spread | × (a) | model TFLOP/s | MFU (bf16 peak) | "
             "peak GiB |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mfu = f"{100 * r['mfu']:.2f} %" if r["mfu"] is not None else "–"
        mem = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "–"
        lines.append(f"| {r['workload']} | {r['path']} | {r['images_per_s']:,.0f} | "
                     f"{100 * r['spread']:.0f} % | {r['vs_anchor']:.2f} | {r['tflops']:.3f} | "
                     f"{mfu} | {mem} |")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
