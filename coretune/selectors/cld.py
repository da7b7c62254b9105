"""CLD (Nagaraj et al., TMLR 2025, arXiv 2508.20230): correlation of loss differences.

A training sample is worth
keeping when its loss moves with the held-out loss during training. With ``ℓ_i(t)`` the
loss of sample ``i`` and ``L(t)`` the mean validation loss after epoch ``t``, the score is
the Pearson correlation over epochs of the differences ``Δℓ_i(t) = ℓ_i(t) − ℓ_i(t−1)`` and
``ΔL(t)``; the highest are kept. Averaged over proxy runs. Needs a validation split
(``val_fraction > 0``); with ``dynamics.outputs: eval`` the sample losses are taken at
each epoch's checkpoint as in the paper, else from the training passes. O(R·E·N) time.
"""

from __future__ import annotations

import numpy as np

from coretune.selectors.base import (
    Selection,
    SelectionContext,
    SelectorArgumentError,
    register_selector,
)
from coretune.selectors.dual import forward_fill
from coretune.selectors.proxies import TrainingOutputs
from coretune.selectors.samplers import Keep, rank_by_difficulty


def cld_scores(sample_losses: np.ndarray, val_losses: np.ndarray) -> np.ndarray:
    """Pearson correlation of each sample's loss differences with the validation loss
    differences: ``sample_losses[R, E, N]``, ``val_losses[R, E]`` → ``[N]`` (mean over R).
    A constant trajectory correlates 0."""
    d_train = np.diff(forward_fill(sample_losses), axis=1)  # [R, E−1, N]
    d_val = np.diff(np.asarray(val_losses, dtype=np.float64), axis=1)[:, :, None]  # [R, E−1, 1]
    a = d_train - d_train.mean(axis=1, keepdims=True)
    b = d_val - d_val.mean(axis=1, keepdims=True)
    num = (a * b).sum(axis=1)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    corr = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return corr.mean(axis=0)


@register_selector("cld", needs={"outputs"}, needs_validation=True,
                   paper="Nagaraj et al., TMLR 2025 (arXiv 2508.20230): correlation of loss "
                         "differences (CLD)")
def cld(ctx: SelectionContext, budget: int, keep: Keep = "hardest") -> Selection:
    """Keep the samples whose loss differences correlate most with the validation loss's
    (``keep: hardest`` keeps the highest correlations)."""
    out: TrainingOutputs = ctx.artifact("outputs")
    if out.val_loss is None or out.val_loss.shape[-1] < 3:
        raise SelectorArgumentError("cld needs validation losses: give the dataset a "
                                    "validation split (val_fraction > 0) and ≥ 3 epochs")
    p = out.p_true
    losses = -np.log(np.clip(forward_fill(p), 1e-12, 1.0))
    return Selection(rank_by_difficulty(cld_scores(losses, out.val_loss), budget, keep,
                                        ctx.rng()))
