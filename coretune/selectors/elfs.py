"""ELFS (Zheng, Tsai et al., ICLR 2025): label-free coreset selection.

"ELFS: Label-Free Coreset Selection with Proxy Training Dynamics". The pipeline, each
stage an artifact built once and shared: encoder embeddings → k-NN graph → deep clustering
(TEMI; SCAN and k-means as ablations) → pseudo-labels → training dynamics on the
pseudo-labels (AUM by default; forgetting, EL2N) → double-end pruning (Sec. 4.3): drop the
β hardest, then the easiest until the budget holds. ``beta: auto`` (default) takes β* from
the ``beta_search`` artifact — a grid search on a 90/10 split of the pseudo-labelled data,
scored on pseudo-labels only; a number fixes β. The selector itself is O(N log N).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from coretune.selectors.base import (
    Selection,
    SelectionContext,
    oriented_difficulty,
    register_selector,
)
from coretune.selectors.ccs import ccs_select
from coretune.selectors.d2 import d2_select
from coretune.selectors.samplers import double_end_prune
from coretune.spec import Beta, BetaSearchSpec, PseudoScore

#: one default for the score, shared with the β search that ranks by the same difficulty
DEFAULT_SCORE: PseudoScore = BetaSearchSpec.model_fields["score"].default


def elfs_needs(args: dict) -> set[str]:
    needs = {"pseudo_scores"}
    if args.get("sampler", "double_end") == "d2":
        needs.add("knn")
    return needs | {"beta_search"} if args.get("beta", "auto") == "auto" else needs


@register_selector("elfs", needs=elfs_needs, label_free=True,
                   uses=("encoder", "knn", "clustering", "beta_search"),
                   paper="Zheng, Tsai et al., ELFS: Label-Free Coreset Selection with Proxy "
                         "Training Dynamics, ICLR 2025")
def elfs(ctx: SelectionContext, budget: int, beta: Beta | Literal["auto"] = "auto",
         score: PseudoScore = DEFAULT_SCORE,
         sampler: Literal["double_end", "ccs", "d2"] = "double_end") -> Selection:
    """Double-end pruning (ELFS Sec. 4.3) of the pseudo-label difficulty with β* (or a given
    β); ``sampler`` swaps in CCS or D² on the same difficulty (ELFS Table 3's ablation; D²
    on the embedding k-NN graph). The encoder, k-NN, clustering and β-search settings
    (:class:`~coretune.spec.EncoderSpec`, ``KnnSpec``, ``ClusteringSpec``,
    ``BetaSearchSpec``) reach it only through its artifacts."""
    chosen_beta = float(ctx.artifact("beta_search")) if beta == "auto" else float(beta)
    difficulty = oriented_difficulty(score, ctx.artifact("pseudo_scores")[score])
    if sampler == "ccs":
        return Selection(ccs_select(difficulty, budget, chosen_beta, 50, ctx.rng()))
    if sampler == "d2":
        nbr, dist = ctx.knn
        return Selection(d2_select(difficulty, np.asarray(nbr), np.asarray(dist, np.float64),
                                   budget, 1.0, 0.1, chosen_beta))
    return Selection(double_end_prune(difficulty, budget, chosen_beta, ctx.rng()))
