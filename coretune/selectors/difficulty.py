"""Difficulty-score selectors from training dynamics: keep the hardest (or easiest) samples.

Forgetting (Toneva et al. 2019), EL2N and GraNd (Paul et al. 2021, one paper), AUM
(Pleiss et al. 2020).

Scores come from one full-data run on ground-truth labels (see ``coretune.artifacts.dynamics``), so
these selectors are supervised (``label_free=False``) even though they read only scores.
``SelectionContext.difficulty`` orients every score so that higher means harder.
"""

from __future__ import annotations

from coretune.selectors.base import Selection, SelectionContext, register_selector
from coretune.selectors.samplers import Keep, rank_by_difficulty


@register_selector("forgetting", needs={"scores"},
                   paper="Toneva et al., An Empirical Study of Example Forgetting during Deep "
                         "Neural Network Learning, ICLR 2019")
def forgetting(ctx: SelectionContext, budget: int, keep: Keep = "hardest") -> Selection:
    """Keep the most (or least) forgotten samples (Toneva et al., ICLR 2019).

    Score: number of forgetting events, epochs t with acc_t(x) = 1 and acc_{t+1}(x) = 0
    (never-learned samples count as maximally forgotten). Higher is harder.
    """
    return Selection(rank_by_difficulty(ctx.difficulty("forgetting"), budget, keep, ctx.rng()))


@register_selector("el2n", needs={"scores"},
                   paper="Paul et al., Deep Learning on a Data Diet: Finding Important "
                         "Examples Early in Training, NeurIPS 2021")
def el2n(ctx: SelectionContext, budget: int, keep: Keep = "hardest") -> Selection:
    """Keep the samples with the largest (or smallest) EL2N (Paul et al., NeurIPS 2021).

    Score: EL2N(x, y) = E_w ‖softmax(f_w(x)) − onehot(y)‖₂ early in training. Higher is harder.
    """
    return Selection(rank_by_difficulty(ctx.difficulty("el2n"), budget, keep, ctx.rng()))


@register_selector("aum", needs={"scores"},
                   paper="Pleiss et al., Identifying Mislabeled Data using the Area Under "
                         "the Margin Ranking, NeurIPS 2020")
def aum(ctx: SelectionContext, budget: int, keep: Keep = "hardest") -> Selection:
    """Keep the samples with the lowest (hardest) or highest AUM (Pleiss et al., NeurIPS 2020).

    Score: AUM(x, y) = (1/T) Σ_t [z_y^(t)(x) − max_{i≠y} z_i^(t)(x)], the margin of the
    assigned logit averaged over epochs. LOWER raw AUM is harder.
    """
    return Selection(rank_by_difficulty(ctx.difficulty("aum"), budget, keep, ctx.rng()))


@register_selector("grand", needs={"scores"},
                   paper="Paul et al., Deep Learning on a Data Diet: Finding Important "
                         "Examples Early in Training, NeurIPS 2021")
def grand(ctx: SelectionContext, budget: int, keep: Keep = "hardest") -> Selection:
    """Keep the samples with the largest (or smallest) GraNd (Paul et al., NeurIPS 2021,
    Def. 2.2), the paper of EL2N.

    Score: GraNd(x, y) = E_w ‖∇_w ℓ(f_w(x), y)‖₂ early in training (here the last layer's
    gradient norm, closed form). Higher is harder.
    """
    return Selection(rank_by_difficulty(ctx.difficulty("grand"), budget, keep, ctx.rng()))
