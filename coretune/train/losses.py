"""Training losses for hard, smoothed, fixed-soft and online-distillation labels.

Equation numbers refer to "Rethinking Coreset Selection: The Surprising Effectiveness
of Soft Labels". All losses are computed in float32 (logits are cast with ``.float()``),
so they are safe under bf16 autocast, and teacher outputs never receive gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LABEL_MODES = ("hard", "smooth", "soft", "kd")
SMOOTHING_CONVENTIONS = ("uniform", "paper")


@dataclass(frozen=True)
class LossConfig:
    """Loss settings.

    ``eps``/``smoothing`` only affect ``smooth``; ``tau``/``lam`` only ``soft``/``kd``.
    """

    mode: str = "hard"
    tau: float = 1.0
    lam: float = 1.0
    eps: float = 0.0
    smoothing: str = "uniform"

    def __post_init__(self) -> None:
        if self.mode not in LABEL_MODES:
            raise ValueError(f"mode must be one of {LABEL_MODES}, got {self.mode!r}")
        if not (self.tau > 0 and math.isfinite(self.tau)):
            raise ValueError(f"tau must be a finite number > 0, got {self.tau!r}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam!r}")
        _check_eps(self.eps)
        if self.smoothing not in SMOOTHING_CONVENTIONS:
            raise ValueError(
                f"smoothing must be one of {SMOOTHING_CONVENTIONS}, got {self.smoothing!r}"
            )

    @property
    def needs_teacher(self) -> bool:
        """Whether this mode trains against teacher logits."""
        return self.mode in {"soft", "kd"}


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


def coreset_loss(
    cfg: LossConfig,
    logits: Tensor,
    targets: Tensor,
    teacher_logits: Tensor | None = None,
    weights: Tensor | None = None,
) -> Tensor:
    """Dispatch on ``cfg.mode``: hard (Eq. 5), smooth (Eq. 2), soft / kd (Eq. 4-6)."""
    if cfg.mode == "hard":
        return cross_entropy(logits, targets, weights)
    if cfg.mode == "smooth":
        probs = smoothed_targets(targets, logits.shape[-1], cfg.eps, cfg.smoothing)
        return cross_entropy(logits, probs, weights)
    if teacher_logits is None:
        raise ValueError(f"mode {cfg.mode!r} needs teacher_logits, got None")
    return distillation_loss(logits, targets, teacher_logits, cfg.tau, cfg.lam, weights)
