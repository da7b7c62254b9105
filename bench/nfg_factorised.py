"""NFG's neighbour counts: the factorised form against materialised gradients, and at scale.

NFG (Mohanty et al., TMLR 2025) counts, per class, the samples whose last-layer weight
gradient g = (p − onehot(y)) hᵀ has cosine > 1 − r with each sample's. The official code
materialises every g (C·d floats per sample) and forms an explicit cosine matrix per class;
coretune uses cos(g_i, g_j) = cos(e_i, e_j)·cos(h_i, h_j)
(:mod:`coretune.selectors.gradient_neighbours`).

1. CIFAR-100 shape (100 classes × 500, C = 100, d = 512; random softmax outputs and
   class-centred ReLU features, so counts spread from 0 to a few hundred): the direct
   implementation — per class the [500, 51,200] gradient matrix, normalised, its Gram —
   against the factorised one, both float64; the counts must be identical. The float32
   factorised counts are timed too, with how many differ from float64.
2. ImageNet shape (1,000 classes × 1,280 = 1,280,000 samples, C = 1,000, d = 512): one
   checkpoint's counts, class by class as the artifact does (inputs made per class), plus
   the Borda ranking and per-class keep over 10 checkpoints of counts; wall time and peak
   memory (maximum RSS, part 2 run first so that the peak is its own; torch's allocations
   are not seen by tracemalloc, so tracemalloc's peak is only numpy's, the ranking's).

    python bench/nfg_factorised.py                 # part 1 (about a minute on 2 cores)
    python bench/nfg_factorised.py --big           # parts 1 and 2 (a few minutes more)
    python bench/nfg_factorised.py --big --threads 1   # as recorded (a shared machine)
    python bench/nfg_factorised.py --big --device cuda --skip-direct
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from coretune.selectors.gradient_neighbours import (
    borda_rank_sums,
    class_neighbour_counts,
    keep_lowest_per_class,
    loss_gradient_errors,
)

RADIUS = 0.2


def synthetic_class(c: int, n: int, num_classes: int, d: int, device: str
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ``c``'s errors p − onehot(c) (softmax of random logits, scale 2) and features
    relu(centre_c + 0.5·noise): cosines spread around NFG's threshold 0.8."""
    gen = torch.Generator().manual_seed(1_000 + c)
    logits = 2.0 * torch.randn(n, num_classes, generator=gen)
    labels = torch.full((n,), c % num_classes, dtype=torch.int64)
    centre = torch.randn(d, generator=gen)
    features = torch.relu(centre + 0.5 * torch.randn(n, d, generator=gen))
    return loss_gradient_errors(logits, labels).to(device), features.to(device)


def direct_counts(errors: torch.Tensor, features: torch.Tensor, radius: float
                  ) -> torch.Tensor:
    """The official code's way: materialise g_i = vec(e_i h_iᵀ) (C·d each), normalise,
    explicit cosine matrix, diagonal excluded, strict threshold (float64)."""
    n = errors.shape[0]
    grads = (errors.double()[:, :, None] * features.double()[:, None, :]).reshape(n, -1)
    norms = grads.norm(dim=1, keepdim=True)
    grads = grads / norms.masked_fill(norms == 0, 1.0)
    cosine = grads @ grads.T
    cosine.fill_diagonal_(float("-inf"))
    return (cosine > 1.0 - radius).sum(dim=1)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cifar_shape(args: argparse.Namespace) -> str:
    """Part 1: identical counts and the speed ratio at 100 × 500, C = 100, d = 512."""
    t_fact = t_fact32 = t_direct = 0.0
    mismatched32 = total = 0
    spread = []
    for c in range(args.classes):
        e, h = synthetic_class(c, 500, 100, 512, args.device)
        sync(args.device)
        t0 = time.perf_counter()
        ours = class_neighbour_counts(e, h, RADIUS)
        sync(args.device)
        t_fact += time.perf_counter() - t0
        t0 = time.perf_counter()
        ours32 = class_neighbour_counts(e, h, RADIUS, dtype=torch.float32)
        sync(args.device)
        t_fact32 += time.perf_counter() - t0
        mismatched32 += int((ours32 != ours).sum())
        total += ours.numel()
        spread.append(ours.cpu())
        if not args.skip_direct:
            t0 = time.perf_counter()
            ref = direct_counts(e, h, RADIUS)
            sync(args.device)
            t_direct += time.perf_counter() - t0
            assert torch.equal(ours, ref), f"class {c}: factorised and direct counts differ"
    counts = torch.cat(spread).float()
    line = (f"- CIFAR-100 shape ({args.classes} classes × 500, C = 100, d = 512, r = {RADIUS}, "
            f"{args.device}): factorised float64 {t_fact:.2f} s")
    if not args.skip_direct:
        line += (f", direct (materialised 51,200-d gradients, explicit cosines) "
                 f"{t_direct:.2f} s → {t_direct / t_fact:.0f}× faster; counts identical "
                 f"for all {total:,} samples")
    line += (f"; float32 factorised {t_fact32:.2f} s, {mismatched32} of {total:,} counts "
             f"differ from float64; counts mean {counts.mean():.1f}, max {counts.max():.0f}")
    return line


def imagenet_shape(args: argparse.Namespace) -> str:
    """Part 2: one checkpoint's counts at 1,000 × 1,280, then Borda over 10 checkpoints."""
    classes, per_class, checkpoints = 1_000, 1_280, 10
    n = classes * per_class
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = torch.empty(n, dtype=torch.int64)
    t_make = t_count = 0.0
    for c in range(classes):
        t0 = time.perf_counter()
        e, h = synthetic_class(c, per_class, classes, 512, args.device)
        sync(args.device)
        t_make += time.perf_counter() - t0
        t0 = time.perf_counter()
        counts[c * per_class:(c + 1) * per_class] = class_neighbour_counts(e, h, RADIUS).cpu()
        t_count += time.perf_counter() - t0
    peak_cuda = (torch.cuda.max_memory_allocated() / 2**20
                 if args.device.startswith("cuda") else None)
    rss_count = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    labels = np.repeat(np.arange(classes), per_class)
    rng = np.random.default_rng(0)  # 10 checkpoints: this one's counts, jittered
    stacked = np.clip(counts.numpy()[None] + rng.integers(-3, 4, (checkpoints, n)), 0, None)
    tracemalloc.start()
    t0 = time.perf_counter()
    kept = keep_lowest_per_class(borda_rank_sums(stacked.astype(np.int32), labels), labels,
                                 n // 10)
    t_rank = time.perf_counter() - t0
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert kept.size == n // 10
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda = "" if peak_cuda is None else f", peak CUDA memory {peak_cuda:.0f} MB"
    return (f"- ImageNet shape (1,000 classes × 1,280 = {n:,} samples, C = 1,000, d = 512, "
            f"{args.device}): one checkpoint's counts {t_count:.1f} s (float64; making the "
            f"synthetic inputs {t_make:.1f} s more), so ≈ {checkpoints * t_count:.0f} s for "
            f"NFG's {checkpoints} checkpoints; Borda over {checkpoints} checkpoints and the "
            f"per-class keep of {n // 10:,}: {t_rank:.1f} s, peak traced {traced / 2**20:.0f} "
            f"MB; max RSS {rss0:.0f} MB before, {rss_count:.0f} MB after the counts, "
            f"{rss:.0f} MB after the ranking{cuda}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=100, help="classes of part 1")
    ap.add_argument("--big", action="store_true", help="also part 2 (1.28M samples)")
    ap.add_argument("--skip-direct", action="store_true", help="part 1 without the reference")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default); 1 is steadier on a shared "
                         "machine, where a busy core stalls every multi-threaded small op")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lines = []
    if args.big:  # first, so that its maximum RSS is its own (part 1's direct form is larger)
        lines.append(imagenet_shape(args))
        print(lines[-1], flush=True)
    lines.insert(0, cifar_shape(args))
    print(lines[0], flush=True)
    if not args.no_write:
        path = Path(__file__).with_name("RESULTS.md")
        path.write_text(path.read_text() + f"\n## nfg_factorised ({dt.date.today()}, "
                        f"{os.cpu_count()} cores, {torch.get_num_threads()} torch "
                        f"thread(s), torch {torch.__version__})\n\n"
                        + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
