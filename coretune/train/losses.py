"""Training losses for hard, smoothed, fixed-soft and online-distillation labels.

Equation numbers refer to "Rethinking Coreset Selection: The Surprising Effectiveness
of Soft Labels". The label sources of :mod:`coretune.train.labels` call these; their
settings (τ, λ, ε, the smoothing convention) are validated once, in the trial spec. All
losses are computed in float32 (logits are cast with ``.float()``), so they are safe under
bf16 autocast, and teacher outputs never receive gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SMOOTHING_CONVENTIONS = ("uniform", "paper")


def _check_eps(eps: float) -> None:
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps!r}")


def _reduce(per_sample: Tensor, weights: Tensor | None) -> Tensor:
    """Mean over the batch, or the weighted mean ``sum(w * l) / sum(w)``."""
    if weights is None:
        return per_sample.mean()
    w = weights.to(device=per_sample.device, dtype=torch.float32).reshape(per_sample.shape)
    return (w * per_sample).sum() / w.sum()


def smoothed_targets(
    targets: Tensor, num_classes: int, eps: float, convention: str = "uniform"
) -> Tensor:
    """Label-smoothed target distributions ``[B, K]`` (float32).

    ``"uniform"``: ``(1 - eps) * onehot + eps / K`` (PyTorch's ``label_smoothing``).
    ``"paper"``: Eq. 2, ``1 - eps`` on the true class and ``eps / (K - 1)`` elsewhere.
    """
    _check_eps(eps)
    if convention == "uniform":
        off, on = eps / num_classes, 1.0 - eps + eps / num_classes
    elif convention == "paper":
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 for 'paper' smoothing, got {num_classes}")
        off, on = eps / (num_classes - 1), 1.0 - eps
    else:
        raise ValueError(f"convention must be one of {SMOOTHING_CONVENTIONS}, got {convention!r}")
    idx = targets.long().reshape(-1, 1)
    out = torch.full((idx.shape[0], num_classes), off, dtype=torch.float32, device=targets.device)
    return out.scatter_(1, idx, on)


def soft_targets(teacher_logits: Tensor, tau: float) -> Tensor:
    """Teacher distribution ``softmax(z_t / tau)`` used in Eq. 4-6; detached, float32."""
    return F.softmax(teacher_logits.detach().float() / tau, dim=-1)


def _ce_per_sample(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-sample CE; ``targets`` are int class indices ``[B]`` or probabilities ``[B, K]``."""
    logp = F.log_softmax(logits.float(), dim=-1)
    if not targets.is_floating_point():
        return F.nll_loss(logp, targets.long(), reduction="none")
    return -(targets.float() * logp).sum(dim=-1)


def cross_entropy(logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean cross-entropy ``-sum_k y_k log softmax(z)_k`` (Eq. 5), optionally weighted."""
    return _reduce(_ce_per_sample(logits, targets), weights)


def cross_entropy_rows(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of each row of a stack: ``[K, B, C]`` logits and ``[K, B]`` class
    targets give ``[K]`` (the K students of a fused batch in one call)."""
    per_sample = _ce_per_sample(logits.flatten(0, 1), targets.flatten())
    return per_sample.view(targets.shape).mean(dim=-1)


def distillation_loss(
    student_logits: Tensor,
    targets: Tensor,
    teacher_logits: Tensor,
    tau: float,
    lam: float,
    weights: Tensor | None = None,
) -> Tensor:
    """``(1 - lam) * CE(z_s, y) + lam * tau^2 * KL(p_t || p_s)`` at temperature ``tau`` (Eq. 4-6).

    The KL is summed over classes; the total is averaged (or weighted) over the batch.
    A zero-weight term is skipped, so e.g. ``lam=0`` never touches the teacher logits.
    """
    per_sample = torch.zeros(student_logits.shape[0], device=student_logits.device)
    if lam < 1.0:
        per_sample = per_sample + (1.0 - lam) * _ce_per_sample(student_logits, targets)
    if lam > 0.0:
        p_t = soft_targets(teacher_logits, tau)
        log_p_s = F.log_softmax(student_logits.float() / tau, dim=-1)
        kl = (torch.xlogy(p_t, p_t) - p_t * log_p_s).sum(dim=-1)
        per_sample = per_sample + lam * tau**2 * kl
    return _reduce(per_sample, weights)
