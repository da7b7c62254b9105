"""The pseudo_dynamics kind: training dynamics on pseudo-labels (ELFS, Sec. 4.2).

The sweep's dynamics recipe, trained on the pseudo-labels instead of ground truth: AUM
(ELFS's default), forgetting and EL2N per sample. Label-free selectors read these as
``pseudo_scores``; they may not read ``scores`` (ground-truth dynamics) at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coretune.artifacts.dynamics import record_dynamics, scores_of
from coretune.artifacts.graph import BuildContext, register_artifact
from coretune.artifacts.store import Built
from coretune.spec import DynamicsSpec, TrialSpec

SOURCE = "pseudo_labels"


def pseudo_dynamics_params(trial: TrialSpec) -> Mapping[str, Any] | None:
    if trial.dynamics is None:
        return None
    return trial.dynamics.model_copy(update={"label_source": SOURCE}).key_dump()


@register_artifact("pseudo_dynamics", version=1, params=pseudo_dynamics_params,
                   deps=lambda trial: {"labels": "pseudo_labels"},
                   provides={"pseudo_scores": scores_of}, gpu=True, recipes=("dynamics",))
def build_pseudo_dynamics(ctx: BuildContext) -> Built:
    """Training dynamics of the dynamics recipe trained on the pseudo-labels (ELFS, Sec.
    4.2): AUM, forgetting and EL2N without ground truth."""
    recipe = DynamicsSpec.model_validate(ctx.params)
    return record_dynamics(ctx.dataset, recipe, ctx.deps["labels"].array("labels"), ctx.device)
