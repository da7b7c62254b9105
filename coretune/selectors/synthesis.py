"""What a synthetic-set method (a distilled set: RDED, CA2D, a file) is handed.

A method registered with ``register_selector(..., synthesizes=True)`` is called by the
``synthetic_set`` artifact kind as ``fn(ctx: SynthesisContext, ipc, **args)`` and returns
a :class:`SyntheticImages`: new uint8 images with hard labels (and optional soft labels),
which coretune then trains on as a dataset of its own (its images, the original test
split), under every label mode and budget, like a coreset (Dey et al., CVPR 2026, "Hard
Truths about Soft Labels": distilled sets beside coresets at equal compute).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ``observer(images uint8 [B, C, H, W]) -> logits float [B, K]``: a trained model's view
Observer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SynthesisContext:
    """The training split (uint8 images, labels), the artifacts the method declared it
    needs (each as its kind hands it to consumers), a seed, and ``observer`` — the
    teacher as a function of uint8 images — when the method needs ``teacher``. ``normalize``
    maps uint8 images to the model's input (what the observer applies itself)."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    seed: int
    artifacts: Mapping[str, Any]
    observer: Any | None = None  # a torch callable on normalised float batches
    normalize: Any | None = None  # uint8 torch batch -> normalised float batch
    device: str = "cpu"
    local: Mapping[str, Any] | None = None  # machine-local inputs (a file's path)


@dataclass(frozen=True)
class SyntheticImages:
    """A synthetic set: ``images`` uint8 ``[n, C, H, W]``, ``labels`` int64 ``[n]``,
    optional ``soft_labels`` float32 ``[n, K]``, and what to record about how it was made."""

    images: np.ndarray
    labels: np.ndarray
    soft_labels: np.ndarray | None = None
    meta: Mapping[str, Any] | None = None
    #: the training indices each image was cut from (``[n, tiles]``), where it was
    sources: np.ndarray | None = None
