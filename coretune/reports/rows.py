"""Row building: a student's spec and metrics → docs/design.md's Parquet rows."""

from __future__ import annotations

import json
import math
import subprocess
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np

import coretune
from coretune.spec import TrialSpec

METRIC_COLUMNS = tuple(f"{split}_{m}" for split in ("test", "val")
                       for m in ("acc", "top5", "nll", "ece"))


def now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1)
def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(coretune.__file__).parent,
                              capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    import ray
    import torch

    return {"coretune_version": coretune.__version__, "git_sha": _git_sha(),
            "torch_version": torch.__version__, "ray_version": ray.__version__}


def _finite(value) -> bool:
    return value is not None and math.isfinite(float(value))


def trial_status(metrics: dict, error: str | None) -> str:
    """error | diverged (a NaN/inf loss or metric) | ok (ran to the end) | stopped."""
    if error:
        return "error"
    if metrics.get("diverged_at_step") is not None or (metrics and not all(
            _finite(metrics.get(k)) for k in ("train_loss", "test_nll") if k in metrics)):
        return "diverged"
    return "ok" if metrics.get("final") else "stopped"


def trial_row(trial: TrialSpec, trial_id: str, metrics: dict, error: str | None,
              versions: dict, *, teacher_key: str | None, teacher_acc: float | None,
              select_seconds: float, started: datetime, finished: datetime,
              fingerprint: str | None = None, selection_key: str | None = None,
              group_id: str | None = None) -> dict:
    """docs/design.md's Parquet row for one student."""
    status = trial_status(metrics, error)
    return {
        "sweep": trial.sweep, "trial_id": trial_id, "status": status, "error": error,
        "dataset": trial.dataset.name, "arch": trial.arch, "selector": trial.selector,
        "selector_args": json.dumps(trial.selector_args, sort_keys=True),
        "ratio": trial.ratio, "n_selected": metrics.get("n_selected"),
        "label_mode": trial.label_mode, "tau": trial.tau, "lam": trial.lam, "eps": trial.eps,
        "smoothing": trial.smoothing, "beta": trial.beta, "seed": trial.seed,
        "budget": json.dumps(trial.budget.model_dump(mode="json"), sort_keys=True),
        "teacher_key": teacher_key, "teacher_test_acc": teacher_acc,
        **{k: metrics.get(k) for k in METRIC_COLUMNS},
        "epochs_run": float(metrics.get("coreset_epochs", 0.0)),
        "stopped_early": status == "stopped", "select_seconds": float(select_seconds),
        "train_seconds": float(metrics.get("train_seconds", 0.0)),
        "peak_memory_bytes": metrics.get("peak_memory_bytes"),
        "device": metrics.get("device", "unknown"), **versions,
        "started_at": started, "finished_at": finished, "metric": trial.metric,
        "data_fingerprint": fingerprint, "selection_key": selection_key, "group_id": group_id,
        "diverged_at_step": metrics.get("diverged_at_step"),
        "arch_args": json.dumps(trial.arch_args, sort_keys=True),
        "label_args": json.dumps(dict(trial.label_args), sort_keys=True),
        "ipc": trial.ipc,
        "teacher_arch": None if trial.teacher is None else trial.teacher.arch,
        "smoke": trial.smoke,  # a smoke run's student: never compared with the papers
        "trial_spec": json.dumps(trial.science(), sort_keys=True),  # everything, for provenance
    }


CURVE_COLUMNS = ("epoch", "step", "coreset_epochs", "train_loss", *METRIC_COLUMNS)


def curve_rows(sweep: str, trial_id: str, reports: list[dict]) -> list[dict]:
    """One row per report of a student."""
    return [{"sweep": sweep, "trial_id": trial_id, **{k: r.get(k) for k in CURVE_COLUMNS}}
            for r in reports if r.get("epoch") is not None]


def selection_rows(key: str, trial: TrialSpec, indices: np.ndarray,
                   weights: np.ndarray | None) -> list[dict]:
    base = {"selection_key": key, "dataset": trial.dataset.name, "selector": trial.selector,
            "selector_args": json.dumps(trial.selector_args, sort_keys=True),
            "ratio": trial.ratio, "seed": trial.seed}
    w = [None] * len(indices) if weights is None else np.asarray(weights).tolist()
    return [{**base, "index": int(i), "weight": wi}
            for i, wi in zip(np.asarray(indices).tolist(), w, strict=True)]
