"""Score samplers: keep the top of a per-sample score, or prune both of its ends.

A score comes from the proxy run (``score: el2n``, oriented by
:data:`~coretune.selectors.base.HIGHER_IS_HARDER` so that higher means harder) or from an
external file (``score_file: path``; the file's convention is "higher = keep", read as
harder). The named selectors are the published methods over these scores:

- ``uncertainty`` — entropy, least confidence or margin of the proxy's softmax (Coleman
  et al., ICLR 2020), most uncertain first;
- ``topk`` — any score, hardest or easiest first;
- ``double_end`` — ELFS's double-end pruning (Zheng, Tsai et al., ICLR 2025, Sec. 4.3):
  drop the ⌊βN⌋ hardest, then the easiest until the budget holds. When β + ratio > 1 the
  cut is lowered to N − budget, so the coreset is never short or empty.

Time O(N log N), memory O(N).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import numpy as np
from annotated_types import Interval

from coretune.selectors.base import (
    DynamicsScore,
    Selection,
    SelectionContext,
    SelectorArgumentError,
    register_selector,
)

Keep = Literal["hardest", "easiest"]
KEEP = get_args(Keep)
Uncertainty = Literal["entropy", "least_confidence", "margin"]


def score_needs(args: dict) -> set[str]:
    """A sampler reads the proxy run's scores, or an external score file."""
    return {"external_scores"} if args.get("score_file") else {"scores"}


def sampler_difficulty(ctx: SelectionContext, score: str, score_file: str | None
                       ) -> np.ndarray:
    """Per-sample difficulty (higher = harder = kept first by ``keep: hardest``), checked
    finite."""
    if score_file:
        d = np.asarray(ctx.artifact("external_scores"), dtype=np.float64)
    else:
        d = ctx.difficulty(score)
    if not np.isfinite(d).all():
        what = "score file" if score_file else f"score {score!r}"
        raise ValueError(f"{int((~np.isfinite(d)).sum())} values of the {what} are not finite")
    return d


def rank_by_difficulty(difficulty: np.ndarray, budget: int, keep: str,
                       rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``budget`` hardest (or easiest) samples; ties broken at random by ``rng``."""
    if keep not in KEEP:
        raise SelectorArgumentError(f"keep must be one of {KEEP}, got {keep!r}")
    d = np.asarray(difficulty, dtype=np.float64)
    if not np.isfinite(d).all():
        raise ValueError(f"{int((~np.isfinite(d)).sum())} difficulty scores are not finite")
    primary = -d if keep == "hardest" else d
    order = np.lexsort((rng.random(d.size), primary))  # the last key is the primary one
    return order[:budget]


def double_end_prune(difficulty: np.ndarray, budget: int, beta: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Drop the ⌊βN⌋ hardest (at most N − budget), then keep the ``budget`` hardest of the
    rest — i.e. drop the easiest until the budget holds. Ties broken at random."""
    n = difficulty.size
    n_hard = min(int(np.floor(beta * n)), n - budget)
    hardest_first = np.lexsort((rng.random(n), -np.asarray(difficulty, dtype=np.float64)))
    return hardest_first[n_hard:n_hard + budget]


@register_selector("topk", needs=score_needs,
                   paper="top-k of a per-sample score (hardest or easiest first)")
def topk(ctx: SelectionContext, budget: int, score: DynamicsScore = "el2n",
         score_file: str | None = None, keep: Keep = "hardest") -> Selection:
    """The ``budget`` hardest (or easiest) samples by ``score`` or an external score file."""
    d = sampler_difficulty(ctx, score, score_file)
    return Selection(rank_by_difficulty(d, budget, keep, ctx.rng()))


@register_selector("uncertainty", needs={"scores"},
                   paper="Coleman et al., Selection via Proxy: Efficient Data Selection for "
                         "Deep Learning, ICLR 2020")
def uncertainty(ctx: SelectionContext, budget: int, score: Uncertainty = "entropy",
                keep: Keep = "hardest") -> Selection:
    """Keep the samples the proxy model is least sure of: highest entropy, highest least
    confidence 1 − p₁, or lowest margin p₁ − p₂."""
    return Selection(rank_by_difficulty(ctx.difficulty(score), budget, keep, ctx.rng()))


@register_selector("double_end", needs=score_needs,
                   paper="Zheng, Tsai et al., ELFS: Label-Free Coreset Selection with Proxy "
                         "Training Dynamics, ICLR 2025 (double-end pruning)")
def double_end(ctx: SelectionContext, budget: int, score: DynamicsScore = "aum",
               score_file: str | None = None,
               beta: Annotated[float, Interval(ge=0.0, lt=1.0)] = 0.1) -> Selection:
    """Double-end pruning on a difficulty score: prune the β hardest, then the easiest."""
    d = sampler_difficulty(ctx, score, score_file)
    return Selection(double_end_prune(d, budget, beta, ctx.rng()))
