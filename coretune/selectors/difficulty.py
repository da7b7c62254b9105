"""Difficulty-score selectors from training dynamics: keep the hardest (or easiest) samples.

Scores come from one full-data run on ground-truth labels (see harness.dynamics), so these
selectors are supervised.
"""

from __future__ import annotations

import numpy as np

from coretune.selectors.base import (
    Selection,
    SelectionContext,
    SelectorArgumentError,
    register_selector,
)

KEEP = ("hardest", "easiest")


def rank_by_difficulty(difficulty: np.ndarray, budget: int, keep: str,
                       rng: np.random.Generator) -> np.ndarray:
    """The ``budget`` hardest (or easiest) samples; ties are broken at random by ``rng``."""
    if keep not in KEEP:
        raise SelectorArgumentError(f"keep must be one of {KEEP}, got {keep!r}")
    d = np.asarray(difficulty, dtype=np.float64)
    primary = -d if keep == "hardest" else d
    order = np.lexsort((rng.random(d.size), primary))  # last key is the primary sort key
    return order[:budget]


@register_selector("forgetting", needs={"scores"},
                   paper="Toneva et al., An Empirical Study of Example Forgetting, ICLR 2019")
def forgetting(ctx: SelectionContext, budget: int, keep: str = "hardest") -> Selection:
    """Keep the most (or least) forgotten samples (forgetting events, Sec. 2)."""
    return Selection(rank_by_difficulty(ctx.difficulty("forgetting"), budget, keep, ctx.rng()))


@register_selector("el2n", needs={"scores"},
                   paper="Paul et al., Deep Learning on a Data Diet, NeurIPS 2021")
def el2n(ctx: SelectionContext, budget: int, keep: str = "hardest") -> Selection:
    """Keep the samples with the largest (or smallest) EL2N score (Def. 2.1)."""
    return Selection(rank_by_difficulty(ctx.difficulty("el2n"), budget, keep, ctx.rng()))


@register_selector("aum", needs={"scores"},
                   paper="Pleiss et al., Identifying Mislabeled Data using the Area Under "
                         "the Margin Ranking, NeurIPS 2020")
def aum(ctx: SelectionContext, budget: int, keep: str = "hardest") -> Selection:
    """Keep the samples with the lowest (hardest) or highest AUM (Eq. 2)."""
    return Selection(rank_by_difficulty(ctx.difficulty("aum"), budget, keep, ctx.rng()))
