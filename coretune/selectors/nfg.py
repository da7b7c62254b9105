"""NFG: keep, per class, the samples whose loss gradients have the most same-direction
neighbours throughout a short proxy run.

Mohanty, Anudeep, Mopuri, "Noise-free Loss Gradients: A Surprisingly Effective Baseline
for Coreset Selection", TMLR 2025. The counts come from the ``gradient_neighbours``
artifact (``coretune.artifacts.gradient_neighbours``), which trains NFG's own proxy
(:func:`nfg_proxy`) and counts at every epoch; the algebra, tie rule and budget rule are
in :mod:`coretune.selectors.gradient_neighbours`.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Interval

from coretune.selectors.base import (
    Selection,
    SelectionContext,
    register_need,
    register_selector,
)
from coretune.selectors.gradient_neighbours import (
    DEFAULT_RADIUS,
    NeighbourCounts,
    borda_rank_sums,
    keep_lowest_per_class,
)
from coretune.spec import AugmentSpec, BudgetSpec, DynamicsSpec, OptimizerSpec, TrialSpec

#: NFG's proxy run (``train_and_save_models.py``, ``scripts/train_for_selection.sh``)
NFG_OPTIMIZER = OptimizerSpec(name="sgd", lr=0.1, momentum=0.0, nesterov=False,
                              weight_decay=0.0, batch_size=32, schedule="constant")
NFG_EPOCHS = 10

# provided by the ``gradient_neighbours`` artifact kind, which registers it too; declared
# here as well so that the selector registry imports on its own (selectors come first)
register_need("gradient_neighbours")


def nfg_proxy(trial: TrialSpec) -> DynamicsSpec:
    """NFG's published proxy: 10 epochs of plain SGD (lr 0.1, batch 32, no momentum, no
    weight decay, constant lr), no augmentation, one checkpoint per epoch. The arch is the
    sweep's ``dynamics:`` arch (the selection model) if the trial carries that recipe, else
    the student's; the seed is the recipe's (0 without one), never the student's, so every
    student of a sweep shares one proxy run. ``augment`` is the empty :class:`AugmentSpec`
    (None would mean the dataset's default augmentation)."""
    recipe = trial.dynamics
    arch, arch_args = (trial.arch, trial.arch_args) if recipe is None else (
        recipe.arch, recipe.arch_args)
    return DynamicsSpec(arch=arch, arch_args=arch_args, seed=0 if recipe is None else recipe.seed,
                        optimizer=NFG_OPTIMIZER,
                        budget=BudgetSpec(unit="epochs", value=NFG_EPOCHS,
                                          max_reports=NFG_EPOCHS),
                        augment=AugmentSpec())


@register_selector("nfg", needs={"gradient_neighbours"}, proxy=nfg_proxy,
                   paper="Mohanty, Anudeep, Mopuri, Noise-free Loss Gradients: A Surprisingly "
                         "Effective Baseline for Coreset Selection, TMLR 2025")
def nfg(ctx: SelectionContext, budget: int,
        radius: Annotated[float, Interval(gt=0.0, lt=2.0)] = DEFAULT_RADIUS) -> Selection:
    """Keep, per class, the samples with the lowest Borda sum of neighbour-count ranks.

    n_t(i) = #{j ≠ i in i's class : cos(∇_W ℓ_i^t, ∇_W ℓ_j^t) > 1 − radius} at each proxy
    checkpoint t (W the last linear layer's weight); rank_t(i) = i's place in its class by
    n_t, most neighbours first (ties: lower index first); keep the lowest Σ_t rank_t(i)
    (ties: lower index first). The class budgets are proportional to class size —
    round-half-even(f·n_c), at least 1, f = budget / N — with a largest-remainder fix-up
    so that exactly ``budget`` indices come back
    (:func:`~coretune.selectors.gradient_neighbours.proportional_class_budgets`). With
    ``class_balanced: true`` the harness splits the budget equally over the classes first.

    ``radius`` (cosine distance, 0 < r < 2) is read by the artifact that counts; here it is
    checked against the radius the counts were made at.
    """
    view: NeighbourCounts = ctx.artifact("gradient_neighbours")
    if abs(view.radius - radius) > 1e-12:
        raise ValueError(f"nfg: neighbour counts were made at radius {view.radius}, the "
                         f"selector was given {radius}")
    rank_sums = borda_rank_sums(view.counts, view.labels)
    return Selection(keep_lowest_per_class(rank_sums, view.labels, budget))
