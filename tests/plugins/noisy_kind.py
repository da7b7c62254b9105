"""A plugin artifact kind, in one file: seeded symmetric label noise on the training labels."""

from __future__ import annotations

import numpy as np

from coretune.artifacts import BuildContext, Built, register_artifact


def _params(trial):
    return {"rate": float(trial.label_args.get("rate", 0.2)), "seed": trial.seed}


@register_artifact("noisy_labels", version=1, params=_params, provides={"noisy_labels"},
                   context=lambda art: art.array("labels"))
def noisy_labels(ctx: BuildContext) -> Built:
    """Flip a ``rate`` share of the labels to another class, uniformly (seeded)."""
    y = ctx.dataset.train_y.copy()
    rng = np.random.default_rng(ctx.params["seed"])
    flip = rng.random(y.size) < ctx.params["rate"]
    k = ctx.dataset.num_classes
    y[flip] = (y[flip] + rng.integers(1, k, int(flip.sum()))) % k
    return Built({"labels": y}, {"flipped": int(flip.sum())})
