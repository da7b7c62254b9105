"""Check: a student compiled as ``compile: auto`` compiles it (CUDA graphs on CUDA) learns what
the same student learns eager — same data, seed and budget, test accuracy compared.

Learnable random data (class-dependent mean images + noise, CIFAR-shaped); small CNN and
ResNet-18. On a CPU ``auto`` compiles nothing and both runs are the same code. Run:
``python bench/compile_check.py`` (a minute on a GPU). Prints one line per model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coretune.spec import AugmentSpec, BudgetSpec, OptimizerSpec  # noqa: E402
from coretune.train.data import ImageDataset, to_device  # noqa: E402
from coretune.train.evaluate import split_evaluators  # noqa: E402
from coretune.train.labels import HardLabels  # noqa: E402
from coretune.train.loop import compile_mode_for, compile_student, init_model, train  # noqa: E402


def learnable(n: int, classes: int, shape: tuple[int, int, int], seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).integers(40, 216, (classes, *shape))
    y = rng.integers(0, classes, n)
    x = np.clip(means[y] + rng.normal(0, 200, (n, *shape)), 0, 255).astype(np.uint8)
    return x, y.astype(np.int64)


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape, classes = (3, 32, 32), 10
    x, y = learnable(5_000, classes, shape, 0)
    tx, ty = learnable(2_000, classes, shape, 1)
    data = to_device(ImageDataset("learnable", x, y, tx, ty, classes,
                                  AugmentSpec(pad=4, flip=True)), device)
    opt = OptimizerSpec(name="sgd", lr=0.05, momentum=0.9, batch_size=128, weight_decay=5e-4)
    budget = BudgetSpec(unit="epochs", value=4, max_reports=2)
    for arch in ("small_cnn", "resnet18"):
        accs = {}
        for mode in ("auto", None):
            model = compile_student(init_model(arch, {}, shape, classes, 0, device), mode,
                                    device)
            started = time.perf_counter()
            res = train(model, data, np.arange(len(y)), HardLabels(data.train_y),
                        split_evaluators(data), budget, opt, 0)
            label = f"{mode}: {compile_mode_for(mode, device) or 'eager'}"
            accs[label] = (100 * res.metrics["test_acc"], time.perf_counter() - started)
        print(arch, device.type, {k: f"{a:.2f} % in {s:.1f} s" for k, (a, s) in accs.items()},
              flush=True)


if __name__ == "__main__":
    main()
