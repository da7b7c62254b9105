"""The selection kind: a coreset (indices, optional weights) of a selector on a dataset.

Its dependencies are whatever the selector needs (scores, embeddings, …, each the artifact
kind that provides it); the :class:`~coretune.selectors.SelectionContext` is built from them
generically. ``labels`` come from the dataset and only when declared: label-free selectors
never see them. A sweep has many coresets, most of them cheap (a random one takes under a
millisecond): the kind is built in batches (``executor="batch"``), many per Ray task.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from coretune.artifacts.graph import BuildContext, provider_of, register_artifact
from coretune.artifacts.store import Artifact, Built, CorruptArtifactError
from coretune.selectors import SelectionContext, budget_for, get_selector, select
from coretune.spec import TrialSpec


def selection_params(trial: TrialSpec) -> Mapping[str, Any]:
    """The selector (and its version once bumped past 1), its arguments (a score file by
    its content, never its path), the ratio and the seed."""
    args = dict(trial.selector_args)
    if args.get("score_file"):
        from coretune.artifacts.external_scores import score_file_digest

        args["score_file"] = "sha256:" + score_file_digest(args["score_file"])
    params = {"selector": trial.selector, "args": args, "ratio": trial.ratio,
              "seed": trial.seed}
    if trial.ipc is not None:  # images per class: enters only IPC coresets' keys
        params["ipc"] = trial.ipc
    version = get_selector(trial.selector).version
    return params if version == 1 else {**params, "selector_version": version}


def effective_args(params: Mapping[str, Any]) -> dict[str, Any]:
    """The selector's arguments as it runs: with images per class, a selector that may see
    labels is class-balanced (exactly IPC of every class); a label-free one keeps IPC ×
    classes in total and never sees a label (Hard Truths' IPC subsets)."""
    args = dict(params["args"])
    if params.get("ipc") is not None and not get_selector(params["selector"]).label_free:
        args["class_balanced"] = True
    return args


def selection_budget(params: Mapping[str, Any], num_samples: int, num_classes: int) -> int:
    """Images kept: IPC × classes, or the ratio of the training split."""
    if params.get("ipc") is not None:
        return int(params["ipc"]) * num_classes
    return budget_for(num_samples, float(params["ratio"]))


def selector_needs(trial: TrialSpec) -> frozenset[str]:
    return get_selector(trial.selector).needs(trial.selector_args)


def selection_deps(trial: TrialSpec) -> dict[str, str]:
    """Each need of the selector (but labels) → the kind that provides it."""
    return {need: provider_of(need).name for need in sorted(selector_needs(trial) - {"labels"})}


def consumer_view(need: str, art: Artifact) -> Any:
    """What a selector or label source is handed for ``need``: the kind's ``context``."""
    return provider_of(need).view(need, art)


def selection_context(ctx: BuildContext) -> SelectionContext:
    """The selector's context from the built dependencies (labels only if declared)."""
    p, ds = ctx.params, ctx.dataset
    needs = get_selector(p["selector"]).needs(effective_args(p))
    artifacts = {need: consumer_view(need, art) for need, art in ctx.deps.items()}
    if "labels" in needs:
        artifacts["labels"] = ds.train_y
    return SelectionContext.from_needs(len(ds.train_y), ds.num_classes, int(p["seed"]),
                                       artifacts)


@register_artifact("selection", version=2, params=selection_params, deps=selection_deps,
                   provides={"selection"}, executor="batch")
def build_selection(ctx: BuildContext) -> Built:
    """Run the selector under its contract (exactly the budget, unique, in range)."""
    p = ctx.params
    started = time.perf_counter()
    sel = select(p["selector"], selection_context(ctx),
                 selection_budget(p, len(ctx.dataset.train_y), ctx.dataset.num_classes),
                 **effective_args(p))
    arrays = {"indices": sel.indices}
    if sel.weights is not None:
        arrays["weights"] = sel.weights
    if "beta_search" in ctx.deps:  # the β the search chose, for the trial rows
        p = {**p, "beta": float(consumer_view("beta_search", ctx.deps["beta_search"]))}
    meta = {**p, "dataset": ctx.dataset.name, "n": int(sel.indices.size),
            "select_seconds": time.perf_counter() - started,
            "deps": {name: art.key for name, art in ctx.deps.items()}}
    return Built(arrays, meta)


def load_selection(art: Artifact, num_samples: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """(indices, weights or None) of a selection artifact, checked before anyone trains on it:
    integer, unique, within ``[0, num_samples)``, and weights (if any) finite, one per index."""
    idx = art.array("indices")
    weights = art.array("weights") if art.has("weights") else None
    bad = None
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or idx.size == 0:
        bad = f"indices of dtype {idx.dtype} and shape {idx.shape}"
    elif np.unique(idx).size != idx.size:
        bad = f"{idx.size - np.unique(idx).size} duplicate indices"
    elif num_samples is not None and (idx.min() < 0 or idx.max() >= num_samples):
        bad = f"indices outside [0, {num_samples})"
    elif weights is not None and (weights.shape != idx.shape or not np.isfinite(weights).all()):
        bad = "weights that do not match the indices or are not finite"
    if bad:
        raise CorruptArtifactError(f"selection {art.key} at {art.path} holds {bad}; delete it "
                                   "to rebuild it")
    return idx, weights
