"""The offset_search kind: EL2N-Best's window offset, chosen on held-out training data.

EL2N-Best (Lee & Chung, ICLR 2024; a baseline of Dey, Sahdev et al., "Rethinking Dataset
Distillation: Hard Truths about Soft Labels", CVPR 2026) keeps a window of the EL2N
ranking: skip the hardest ``offset`` share, keep the next ``budget``
(:mod:`coretune.selectors.el2n_best`). Its offset is chosen by ELFS's β search
(:mod:`coretune.artifacts.beta_search`: the same :class:`SearchRule` — sequential grid,
noise-aware stop, ASHA — and the same two executors, in process and on Ray Tune), with:

- labels: the dataset's training labels (ground truth) instead of pseudo-labels; the
  dependency is the sweep's ``dynamics`` run, whose EL2N ranks the samples;
- split: 90/10 of the **training** split (``search_fraction``, stratified, seeded by
  ``search_seed``); each offset's student trains on the selector's own window over the
  90 % (:func:`coretune.selectors.select` with that offset, per class when the selector
  is) and is scored on the 10 %. The test split is never evaluated: the reproduction
  (``andriotis/ca2d``) chose the offset on test accuracy, this search does not;
- grid: ``beta_grid`` read as offsets (default 0.0, 0.1, …, 0.9); offsets that cut
  the same samples (⌊offset·n⌋ ≥ n − budget) are tried once.

The students are the trial's (arch, budget, optimiser, augmentation) on hard labels,
whatever the trial's label mode. Cost: one student per offset tried (ASHA stops weak
ones early).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from coretune.artifacts.beta_search import (
    SEARCH_INPUTS,
    SearchInputs,
    beta_search_params,
    search_in_process,
)
from coretune.artifacts.graph import BuildContext, register_artifact
from coretune.artifacts.store import Artifact, Built
from coretune.selectors import SelectionContext, budget_for, get_selector, select
from coretune.spec import TrialSpec
from coretune.train.evaluate import Evaluator, held_out_evaluator

SELECTOR = "el2n_best"


def offset_search_params(trial: TrialSpec) -> Mapping[str, Any]:
    """The β search's settings and student (:func:`beta_search_params`), ranked by EL2N,
    and whether the window is taken per class (the selector's ``class_balanced``)."""
    balanced = get_selector(trial.selector).class_balanced(trial.selector_args)
    return {**beta_search_params(trial), "score": "el2n", "class_balanced": balanced}


class WindowSearchInputs(SearchInputs):
    """A search's inputs whose coreset is EL2N-Best's window and whose only evaluator is
    the held-out 10 % of the training split (ground-truth labels)."""

    def coreset(self, beta: float) -> np.ndarray:
        """Dataset indices of the selector's window at offset ``beta`` over the 90 %."""
        pos = self.train_pos
        ctx = SelectionContext.from_needs(
            pos.size, self.data.num_classes, int(self.params["seed"]),
            {"labels": self.pseudo[pos], "scores": {"el2n": self.difficulty[pos]}})  # EL2N
        chosen = select(SELECTOR, ctx, budget_for(pos.size, self.params["ratio"]),
                        offset=float(beta), class_balanced=bool(self.params["class_balanced"]))
        return pos[chosen.indices]

    def evaluators(self) -> list[Evaluator]:
        """The held-out 10 % against its ground-truth labels; never the test split."""
        return [held_out_evaluator(self.data, self.val_pos, self.pseudo[self.val_pos])]


SEARCH_INPUTS["offset_search"] = WindowSearchInputs


def chosen_offset(art: Artifact) -> float:
    """What a selector that needs ``offset_search`` is handed: the offset chosen (the
    search's β*)."""
    return float(art.meta["beta"])


@register_artifact("offset_search", version=1, params=offset_search_params,
                   deps=lambda trial: {"scores": "dynamics"},
                   provides={"offset_search": chosen_offset}, gpu=True, executor="tune",
                   tune_executor="coretune.driver.beta_search_tune:search_on_tune")
def build_offset_search(ctx: BuildContext) -> Built:
    """The offset search in this process (a sweep runs it on Tune, its declared executor)."""
    inputs = WindowSearchInputs.from_deps(ctx.params, ctx.deps, ctx.dataset, ctx.device)
    return search_in_process(inputs).built(ctx.params)
