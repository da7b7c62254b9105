"""EL2N-Best: the best window over the EL2N ranking (Lee & Chung, ICLR 2024, as the
baseline "EL2N-Best" of Dey, Sahdev et al., "Rethinking Dataset Distillation: Hard Truths
about Soft Labels", CVPR 2026, arXiv 2604.18811).

Rank the samples by EL2N (Paul et al., NeurIPS 2021: ‖softmax − onehot‖₂ early in a proxy
run, from the ``scores`` of the sweep's ``dynamics:``), hardest first; skip the hardest
``offset`` share of them, ⌊offset·n⌋ (at most n − budget, so the window never runs off
the easy end), and keep the next ``budget``. Per class by default (n the class's size,
budget its share), as the coresets of the paper's tables are per class.

``offset: auto`` (the default, the "Best" of the name) takes the offset the
``offset_search`` artifact chose (:mod:`coretune.artifacts.offset_search`): ELFS's β search
(same rule, same two executors) on a 90/10 split of the **training** data with
ground-truth labels, the offset grid as its β grid (``beta_grid`` and the other
:class:`~coretune.spec.BetaSearchSpec` settings are this selector's arguments), each
offset's student scored on the held-out 10 %. The test split is never used to choose.
The public reproduction (``andriotis/ca2d``, [B4]) chose the window on **test** accuracy,
as the paper implicitly did; it parametrised the window as ``round(off·(n_c − ipc))`` per
class over offsets {0, 10, …, 90} %, where here the offset is a share of the class
(``⌊offset·n_c⌋``, capped at n_c − ipc): the same windows up to the grid's spacing.

Selection is O(N log N); the search trains one student per offset tried.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Interval

from coretune.selectors.base import (
    Selection,
    SelectionContext,
    SelectorArgumentError,
    register_need,
    register_selector,
)
from coretune.selectors.samplers import double_end_prune

PAPER = ("EL2N-Best (Lee & Chung, ICLR 2024) as a baseline of Dey, Sahdev et al., Rethinking "
         "Dataset Distillation: Hard Truths about Soft Labels, CVPR 2026 (arXiv 2604.18811)")
#: the share of the hardest samples skipped before the window
Offset = Annotated[float, Interval(ge=0.0, lt=1.0)]

register_need("offset_search")


def el2n_window(el2n: np.ndarray, budget: int, offset: float,
                rng: np.random.Generator) -> np.ndarray:
    """Positions of the window: skip the ⌊offset·n⌋ highest-EL2N samples (at most
    n − budget), keep the next ``budget``. Ties are broken at random by ``rng``. This is
    double-end pruning (ELFS Sec. 4.3) with β = offset, the rule the offset search tries."""
    return double_end_prune(np.asarray(el2n, dtype=np.float64), budget, float(offset), rng)


def el2n_best_needs(args: dict[str, Any]) -> set[str]:
    """EL2N from the proxy run, and the offset search's choice when ``offset`` is auto.
    The search always ranks by EL2N: a ``score`` other than ``el2n`` is refused."""
    if args.get("score", "el2n") != "el2n":
        raise SelectorArgumentError(f"selector 'el2n_best' ranks by EL2N; its offset search "
                                    f"takes no other score (got score={args['score']!r})")
    return {"scores", "offset_search"} if args.get("offset", "auto") == "auto" else {"scores"}


@register_selector("el2n_best", needs=el2n_best_needs, uses=("beta_search",), paper=PAPER,
                   class_balanced=True)
def el2n_best(ctx: SelectionContext, budget: int,
              offset: Offset | Literal["auto"] = "auto") -> Selection:
    """The EL2N window at ``offset`` (a share of the samples skipped from the hard end) or,
    with ``auto``, at the offset its validation search chose. The search's settings
    (:class:`~coretune.spec.BetaSearchSpec`; ``beta_grid`` is the offset grid) reach it only
    through the ``offset_search`` artifact."""
    chosen = float(ctx.artifact("offset_search")) if offset == "auto" else float(offset)
    return Selection(el2n_window(ctx.difficulty("el2n"), budget, chosen, ctx.rng()))
