"""One trial as plain functions: resolve its artifacts, then train and report.

Nothing here imports Ray; the Tune trainable and the tests call these directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from coretune.harness.artifacts import Artifact, ArtifactStore
from coretune.harness.data import DeviceData, ImageDataset
from coretune.harness.dynamics import SCORE_NAMES, get_dynamics
from coretune.harness.losses import LossConfig
from coretune.harness.models import build_model
from coretune.harness.teacher import get_teacher
from coretune.harness.train import Hooks, TeacherSignal, TrainResult, train_model
from coretune.search_spaces.schema import BudgetSpec, OptimizerSpec, RecipeSpec, selection_key
from coretune.selectors import SelectionContext, budget_for, get_selector, select


def recipe_of(spec: Mapping[str, Any]):
    return RecipeSpec.model_validate(spec).recipe()


def teacher_for(store: ArtifactStore, ds: ImageDataset, spec: Mapping[str, Any],
                device: str = "cpu") -> tuple[Artifact, bool]:
    """The trial's teacher artifact (trained on the full split if not cached)."""
    return get_teacher(store, ds, int(spec["seed"]), recipe_of(spec), device)


def dynamics_for(store: ArtifactStore, ds: ImageDataset, spec: Mapping[str, Any],
                 device: str = "cpu") -> tuple[Artifact, bool]:
    """Ground-truth training dynamics (AUM, forgetting, EL2N) for a trial's selector."""
    return get_dynamics(store, ds, int(spec["seed"]), recipe_of(spec), device)


def selection_for(store: ArtifactStore, ds: ImageDataset, trial: Mapping[str, Any],
                  dynamics: Artifact | None = None) -> tuple[Artifact, bool]:
    """The trial's coreset, content-addressed by (dataset, selector, args, ratio, seed, scores).

    The context holds only what the selector declared; label-free selectors get no labels.
    """
    info = get_selector(trial["selector"])
    needs = info.needs(trial["selector_args"])

    def compute():
        scores = None
        if "scores" in needs:
            if dynamics is None:
                raise ValueError(f"selector {info.name!r} needs training-dynamics scores")
            scores = {k: dynamics.array(k) for k in SCORE_NAMES}
        ctx = SelectionContext(
            num_samples=len(ds.train_y), num_classes=ds.num_classes, seed=int(trial["seed"]),
            labels_=ds.train_y if "labels" in needs else None, scores_=scores)
        started = time.perf_counter()
        sel = select(info.name, ctx, budget_for(len(ds.train_y), trial["ratio"]),
                     **trial["selector_args"])
        arrays = {"indices": sel.indices}
        if sel.weights is not None:
            arrays["weights"] = sel.weights
        meta = {"selector": info.name, "args": trial["selector_args"], "ratio": trial["ratio"],
                "seed": trial["seed"], "dataset": ds.name, "n": int(sel.indices.size),
                "select_seconds": time.perf_counter() - started,
                "dynamics_key": None if dynamics is None else dynamics.key}
        return arrays, meta, None

    return store.get_or_compute(selection_key(dict(trial)), compute)


def train_trial(
    trial: Mapping[str, Any],
    data: DeviceData,
    indices: np.ndarray,
    weights: np.ndarray | None = None,
    teacher: TeacherSignal | None = None,
    report: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train the trial's student on its coreset under its label mode; ``report`` each report."""
    loss_cfg = LossConfig(mode=trial["label_mode"], tau=trial["tau"], lam=trial["lam"],
                          eps=trial["eps"], smoothing=trial["smoothing"])
    optim = OptimizerSpec.model_validate(trial["optimizer"]).config()
    budget = BudgetSpec.model_validate(trial["budget"]).config()
    torch.manual_seed(int(trial["seed"]))
    input_shape = tuple(data.train_x.shape[1:])
    model = build_model(trial["arch"], input_shape, data.num_classes).to(data.device)
    if data.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(data.device)
    started = time.perf_counter()

    def on_report(metrics: dict) -> None:
        if report is None:
            return
        peak = (torch.cuda.max_memory_allocated(data.device)
                if data.device.type == "cuda" else None)
        report({**metrics, "n_selected": int(len(indices)),
                "epochs_run": metrics["coreset_epochs"],
                "train_seconds": time.perf_counter() - started,
                "peak_memory_bytes": peak})

    return train_model(model, data, indices, loss_cfg, optim, budget, int(trial["seed"]),
                       teacher=teacher, weights=weights, hooks=Hooks(on_report=on_report))
