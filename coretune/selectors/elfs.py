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

from typing import Annotated, Literal

import numpy as np
from annotated_types import Ge, Interval

from coretune.selectors.base import HIGHER_IS_HARDER, Selection, SelectionContext, register_selector
from coretune.selectors.ccs import ccs_select
from coretune.selectors.d2 import d2_select
from coretune.selectors.scores import double_end_prune

Beta = Annotated[float, Interval(ge=0.0, lt=1.0)]


def elfs_needs(args: dict) -> set[str]:
    needs = {"pseudo_scores"}
    if args.get("sampler", "double_end") == "d2":
        needs.add("knn")
    return needs | {"beta_search"} if args.get("beta", "auto") == "auto" else needs


@register_selector("elfs", needs=elfs_needs, label_free=True,
                   paper="Zheng, Tsai et al., ELFS: Label-Free Coreset Selection with Proxy "
                         "Training Dynamics, ICLR 2025")
def elfs(ctx: SelectionContext, budget: int, beta: Beta | Literal["auto"] = "auto",
         score: Literal["aum", "forgetting", "el2n"] = "aum",
         encoder: str = "pixels", encoder_args: dict | None = None,
         encoder_weights: str | None = None, knn_k: Annotated[int, Ge(1)] = 50,
         knn_metric: Literal["cosine", "euclidean"] = "cosine",
         clustering: Literal["temi", "scan", "kmeans"] = "temi",
         clusters: Annotated[int, Ge(2)] | None = None, clustering_args: dict | None = None,
         clustering_seed: Annotated[int, Ge(0)] = 0,
         beta_grid: list[Beta] | None = None,
         search_scheduler: Literal["fifo", "asha"] = "asha",
         patience: Annotated[int, Ge(1)] = 1,
         stop_tolerance: Annotated[float, Interval(ge=0.0, le=100.0)] = 1.0,
         search_fraction: Annotated[float, Interval(gt=0.0, lt=1.0)] = 0.1,
         search_seed: Annotated[int, Ge(0)] = 0, grace_period: Annotated[int, Ge(1)] = 1,
         reduction_factor: Annotated[float, Interval(gt=1.0, le=100.0)] = 3.0,
         sampler: Literal["double_end", "ccs", "d2"] = "double_end") -> Selection:
    """Double-end pruning of the pseudo-label difficulty with β* (or a given β); ``sampler``
    swaps in CCS or D² on the same difficulty (ELFS Table 3's ablation; D² on the
    embedding k-NN graph)."""
    chosen_beta = float(ctx.artifact("beta_search")) if beta == "auto" else float(beta)
    raw = np.asarray(ctx.artifact("pseudo_scores")[score], dtype=np.float64)
    difficulty = raw if HIGHER_IS_HARDER[score] else -raw
    if sampler == "ccs":
        return Selection(ccs_select(difficulty, budget, chosen_beta, 50, ctx.rng()))
    if sampler == "d2":
        nbr, dist = ctx.knn
        return Selection(d2_select(difficulty, np.asarray(nbr), np.asarray(dist, np.float64),
                                   budget, 1.0, 0.1, chosen_beta))
    return Selection(double_end_prune(difficulty, budget, chosen_beta, ctx.rng()))
