"""CAD-Prune: compute-aware difficulty (Dey, Sahdev, Bhati, Mopuri, Babu, "Rethinking
Dataset Distillation: Hard Truths about Soft Labels", CVPR 2026, arXiv 2604.18811, Sec. 5).

The scoring model is trained on the **full** data for exactly the compute the students get
(the key ablation, HT Table 14: +7–9 points over an early checkpoint of a long run), and
each sample's score S_r(x) is recorded at R points of that run. Then (HT Eq. 1–2, the
Dynamic-Uncertainty indexing):

    U_k(x)   = std(S_k(x), …, S_{k+J−1}(x))          unbiased (ddof = 1)
    CAD(x)   = (1/W) Σ_{k=R−J−W}^{R−J−1} U_k(x)      the last W windows

so the final point R − 1 never enters a window. The coreset keeps, per class, the samples
of highest CAD (the most uncertain; ``keep: lowest`` reverses it).

Defaults and where they come from:

- J = 6, W = 2: **the paper** (ImageNet-1K, compute-matched K ≈ 8 epochs). The public
  reproduction ``andriotis/ca2d`` uses J = K − W on CIFAR-100 (J = 6 at K = 30 fell below
  random there); here J = min(6, R − W) unless ``window`` is given.
- top per class: **the paper** (class-balanced selection); keeping the *highest* CAD is the
  reproduction's reading (inherited from Dyn-Unc), not stated in the text the project saw.
- compute alignment K = images a student sees ÷ N: **the paper** (Sec. 2 and 5, "the same
  compute"); here the proxy takes exactly the student's number of optimizer steps at the
  student's batch size (:mod:`coretune.artifacts.checkpoint_scores`).
- R = max(8, ⌈K⌉) points equally spaced in images seen (fractional K allowed), instead of
  the paper's one point per epoch: **this project's choice**, so that runs under 8 epochs
  still have windows to take a std over.
- S = probability of the true class p_y (default; the reading of HT's 𝕊(y|x, θᵏ) as in
  Dyn-Unc) or EL2N ‖softmax − onehot‖₂ (``score: el2n``, the reproduction's choice).
- the proxy's seed is fixed (not the student's) and its arch is the student's: **this
  project's choice** (the reproduction trains its scorer with the student's arch, seed 0).

Cost: one proxy run of the students' compute plus R eval-mode passes over the training
split; the scores are O(R·N) memory and the window maths O(J·W·N).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Ge
from numpy.lib.stride_tricks import sliding_window_view

from coretune.selectors.base import (
    Selection,
    SelectionContext,
    SelectorArgumentError,
    register_need,
    register_selector,
)
from coretune.selectors.samplers import rank_by_difficulty
from coretune.spec import DynamicsSpec, TrialSpec

PAPER = ("Dey, Sahdev, Bhati, Mopuri, Babu, Rethinking Dataset Distillation: Hard Truths "
         "about Soft Labels, CVPR 2026 (arXiv 2604.18811), Sec. 5: CAD-Prune")
#: J and W of the paper (ImageNet-1K)
DEFAULT_WINDOW = 6
DEFAULT_LAST_WINDOWS = 2
#: the fewest recording points R when it is derived from the compute (R = max(8, ⌈K⌉))
MIN_POINTS = 8
CadScore = Literal["p_true", "el2n"]

register_need("checkpoint_scores")


@dataclass(frozen=True)
class CheckpointScores:
    """Per-sample scores at R points of a proxy run: the true-class probability ``p_true``
    and EL2N ``el2n`` (each ``[R, N]``), and the training images seen at each point."""

    p_true: np.ndarray
    el2n: np.ndarray
    images_seen: np.ndarray

    @property
    def points(self) -> int:
        return int(self.p_true.shape[0])

    def trajectory(self, score: str) -> np.ndarray:
        """``[R, N]`` float64 trajectory of ``score`` (``p_true`` or ``el2n``)."""
        if score not in ("p_true", "el2n"):
            raise SelectorArgumentError(f"unknown checkpoint score {score!r}; known: "
                                        "['el2n', 'p_true']")
        return np.asarray(getattr(self, score), dtype=np.float64)

    def subset(self, positions: np.ndarray) -> CheckpointScores:
        """The scores of samples ``positions`` (the sample axis is the second)."""
        pos = np.asarray(positions, dtype=np.int64)
        return CheckpointScores(self.p_true[:, pos], self.el2n[:, pos], self.images_seen)


def default_points(images_seen: int, num_samples: int) -> int:
    """R = max(8, ⌈K⌉), K = ``images_seen`` ÷ ``num_samples`` (full-data epochs)."""
    return max(MIN_POINTS, -(-int(images_seen) // int(num_samples)))


def resolve_window(points: int, window: int | None, last_windows: int) -> int:
    """J: ``window`` if given, else min(6, R − W); refuses a J, W that do not fit in R."""
    j = min(DEFAULT_WINDOW, points - last_windows) if window is None else int(window)
    if j < 2 or last_windows < 1 or j + last_windows > points:
        raise SelectorArgumentError(
            f"cad_prune: windows of J = {j} points, the last W = {last_windows} of them, "
            f"need J >= 2, W >= 1 and J + W <= R = {points} recorded points")
    return j


def cad_scores(trajectory: np.ndarray, window: int, last_windows: int) -> np.ndarray:
    """CAD of each sample (HT Eq. 1–2): the mean over the last W windows k = R−J−W …
    R−J−1 of U_k, the unbiased std of the J points S_k … S_{k+J−1}. ``trajectory`` is
    ``[R, N]``; vectorised over samples, O(J·W·N)."""
    s = np.asarray(trajectory, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"trajectory must be [R, N], got shape {s.shape}")
    r, j, w = s.shape[0], int(window), int(last_windows)
    if j < 2 or w < 1 or j + w > r:
        raise ValueError(f"need J >= 2, W >= 1 and J + W <= R; got J={j}, W={w}, R={r}")
    span = s[r - j - w:r - 1]  # the J + W − 1 points the last W windows cover
    windows = sliding_window_view(span, j, axis=0)  # [W, N, J]
    return windows.std(axis=-1, ddof=1).mean(axis=0)


def cad_proxy(trial: TrialSpec) -> DynamicsSpec:
    """The scoring run CAD-Prune is defined with: compute-aligned to ``trial``'s students.

    Arch: ``trial.dynamics``'s if the trial has one, else the student's. Optimiser,
    budget and augmentation: the student's — the budget and batch are *the student's*, and
    :mod:`coretune.artifacts.checkpoint_scores` trains the proxy on all N samples for the
    number of optimiser steps, at the batch size, a student with this budget takes on its
    coreset (``budget_for(N, ratio)``), so that it sees the images the student sees. The
    seed is fixed (``trial.dynamics.seed``, else 0), not the student's: students that
    differ only in their seed share one proxy run. One report (the scores are recorded by
    the kind's own hook, not at reports).
    """
    base = trial.dynamics
    arch, arch_args = (trial.arch, trial.arch_args) if base is None else (base.arch,
                                                                          base.arch_args)
    return DynamicsSpec(arch=arch, arch_args=arch_args, seed=0 if base is None else base.seed,
                        optimizer=trial.optimizer,
                        budget=trial.budget.model_copy(update={"max_reports": 1}),
                        augment=trial.augment)


def cad_needs(args: dict[str, Any]) -> set[str]:
    """The checkpoint scores. J and W are checked against R here when R is given (before
    the proxy trains); a derived R is known only once the scores are recorded."""
    points, window = args.get("points"), args.get("window")
    last = args.get("last_windows", DEFAULT_LAST_WINDOWS)
    if isinstance(points, int) and isinstance(last, int) and (
            window is None or isinstance(window, int)):
        resolve_window(points, window, last)
    return {"checkpoint_scores"}


@register_selector("cad_prune", needs=cad_needs, paper=PAPER, proxy=cad_proxy,
                   class_balanced=True)
def cad_prune(ctx: SelectionContext, budget: int, score: CadScore = "p_true",
              points: Annotated[int, Ge(3)] | None = None,
              window: Annotated[int, Ge(2)] | None = None,
              last_windows: Annotated[int, Ge(1)] = DEFAULT_LAST_WINDOWS,
              keep: Literal["highest", "lowest"] = "highest") -> Selection:
    """Keep the samples of highest (``keep: lowest``: lowest) CAD (HT Sec. 5, Eq. 1–2) —
    per class by default. ``score``: the trajectory's score, p_y or EL2N. ``points`` R
    (None: max(8, ⌈K⌉), set when the proxy is recorded), ``window`` J (None: min(6, R −
    W)), ``last_windows`` W. Ties are broken at random by the selection seed. O(N log N)
    after the O(J·W·N) window maths."""
    scores: CheckpointScores = ctx.artifact("checkpoint_scores")
    if points is not None and scores.points != points:
        raise RuntimeError(f"cad_prune asked for R = {points} points, its checkpoint scores "
                           f"hold {scores.points}")
    j = resolve_window(scores.points, window, last_windows)
    cad = cad_scores(scores.trajectory(score), j, last_windows)
    order = "hardest" if keep == "highest" else "easiest"  # CAD read as difficulty
    return Selection(rank_by_difficulty(cad, budget, order, ctx.rng()))
