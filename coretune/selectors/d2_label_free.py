"""Label-free D² (ELFS's baseline, Table 1; Maharana et al., ICLR 2024, Sec. 3).

D² message passing (:mod:`coretune.selectors.d2`) with uniform initial scores on the
encoder's k-NN graph: the forward pass turns density into importance, the reverse greedy
pass spreads the picks. No labels and no training dynamics; O(N·k·log N).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from annotated_types import Interval

from coretune.selectors.base import Selection, SelectionContext, register_selector
from coretune.selectors.d2 import d2_select


@register_selector("d2_label_free", needs={"knn"}, label_free=True, uses=("encoder", "knn"),
                   paper="Maharana, Yadav & Bansal, D2 Pruning, ICLR 2024 (label-free, "
                         "uniform scores, as in ELFS's Table 1)")
def d2_label_free(ctx: SelectionContext, budget: int,
                  gamma: Annotated[float, Interval(ge=0.0, le=1e3)] = 0.1,
                  gamma_forward: Annotated[float, Interval(ge=0.0, le=1e3)] = 1.0) -> Selection:
    """D² (Maharana et al. 2024, Sec. 3) with every initial score 1 on the embedding k-NN
    graph (the encoder and k-NN settings reach it through the ``knn`` artifact)."""
    nbr, dist = ctx.knn
    scores = np.ones(ctx.num_samples)
    return Selection(d2_select(scores, np.asarray(nbr), np.asarray(dist, dtype=np.float64),
                               budget, gamma_forward, gamma, 0.0, normalize=False))
