"""The sweep driver: validate → resolve artifacts once → Ray Tune trials → Parquet.

Everything that can fail on bad input (spec, datasets, corrupt cache, unreadable earlier
results) is checked before Ray starts or anything is written. Re-running a sweep into the
same directory skips the trials that already finished ``ok`` and keeps every earlier row.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import coretune
from coretune.harness.artifacts import Artifact, ArtifactStore
from coretune.harness.data import ImageDataset, load_dataset
from coretune.harness.dynamics import ground_truth_dynamics_key
from coretune.harness.teacher import teacher_key
from coretune.harness.trial import dynamics_for, recipe_of, teacher_for
from coretune.reports import schema as report_schema
from coretune.search_spaces.schema import SweepSpec, expand, load_spec, selection_key

CACHE_ENV = "CORETUNE_CACHE"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "coretune"))


@dataclass
class Plan:
    """A validated sweep: its spec, trials to run, datasets and artifact keys."""

    spec: SweepSpec
    out_dir: Path
    store: ArtifactStore
    trials: list[dict[str, Any]]
    skipped: int
    datasets: dict[str, ImageDataset]
    teachers: dict[str, tuple[str, dict]] = field(default_factory=dict)  # key → (dataset, spec)
    dynamics: dict[str, tuple[str, dict]] = field(default_factory=dict)


def plan_sweep(spec_path: str | Path, out_dir: str | Path, cache_dir: str | Path | None = None,
               data_root: str | None = None, download: bool = False) -> Plan:
    """Validate everything a sweep needs without writing anything or starting Ray."""
    spec = load_spec(spec_path)
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} exists and is not a directory")
    trials = expand(spec)
    root = data_root or spec.data_root
    datasets = {name: load_dataset(name, root, download) for name in spec.datasets}
    store = ArtifactStore(cache_dir or default_cache_dir())
    done: set[str] = set()
    trials_path = out_dir / "trials.parquet"
    if trials_path.exists():
        previous = report_schema.read_table(trials_path, report_schema.TRIALS)
        ok = previous[(previous["sweep"] == spec.name) & (previous["status"] == "ok")]
        done = set(ok["trial_id"])
    todo = [t for t in trials if t["trial_id"] not in done]
    plan = Plan(spec, out_dir, store, todo, len(trials) - len(todo), datasets)
    for t in plan.trials:
        ds = datasets[t["dataset"]]
        if t["teacher"] is not None:
            key = teacher_key(ds.name, int(t["teacher"]["seed"]), recipe_of(t["teacher"]))
            t["teacher_key"] = key
            plan.teachers[key] = (ds.name, t["teacher"])
        else:
            t["teacher_key"] = None
        t["dynamics_key"] = None
        if t["dynamics"] is not None:
            t["dynamics_key"] = ground_truth_dynamics_key(
                ds, int(t["dynamics"]["seed"]), recipe_of(t["dynamics"]))
            plan.dynamics[t["dynamics_key"]] = (ds.name, t["dynamics"])
        t["selection_key"] = selection_key(t)
    for key in [*plan.teachers, *plan.dynamics, *{t["selection_key"] for t in plan.trials}]:
        if store.exists(key):
            store.load(key)  # verifies checksums: a corrupt cache fails here, before any work
    return plan


def _init_ray(address: str | None) -> bool:
    import ray

    from coretune.harness.trainable import NAMESPACE

    if ray.is_initialized():
        return False
    ray.init(address=address, namespace=NAMESPACE, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR", configure_logging=True)
    return True


def resolve_artifacts(plan: Plan) -> tuple[dict[str, Artifact], dict[str, Artifact], float]:
    """Train missing teachers and dynamics runs as Ray tasks (in parallel), once each."""
    import ray

    res = plan.spec.resources

    @ray.remote
    def build(kind: str, ds: ImageDataset, spec: dict, store_root: str) -> str:
        import torch

        torch.set_num_threads(max(1, int(res.cpu)))
        device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        fn = teacher_for if kind == "teacher" else dynamics_for
        return fn(ArtifactStore(store_root), ds, spec, device)[0].key

    started = time.perf_counter()
    jobs = {}
    for kind, table in (("teacher", plan.teachers), ("dynamics", plan.dynamics)):
        for key, (name, spec) in table.items():
            if not plan.store.exists(key):
                jobs[key] = build.options(num_cpus=res.cpu, num_gpus=res.gpu).remote(
                    kind, plan.datasets[name], spec, str(plan.store.root))
    for key, ref in jobs.items():
        got = ray.get(ref)
        assert got == key, f"artifact key mismatch: {got} != {key}"
    teachers = {k: plan.store.load(k) for k in plan.teachers}
    dynamics = {k: plan.store.load(k) for k in plan.dynamics}
    return teachers, dynamics, time.perf_counter() - started


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(coretune.__file__).parent,
                              capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def trial_row(trial: dict, metrics: dict, error: str | None, versions: dict,
              teacher_acc: float | None, select_seconds: float, started: datetime,
              finished: datetime) -> dict:
    """DESIGN.md's Parquet row for one trial."""
    final = bool(metrics.get("final"))
    status = "error" if error else ("ok" if final else "stopped")
    return {
        "sweep": trial["sweep"], "trial_id": trial["trial_id"], "status": status,
        "error": error, "dataset": trial["dataset"], "arch": trial["arch"],
        "selector": trial["selector"],
        "selector_args": json.dumps(trial["selector_args"], sort_keys=True),
        "ratio": trial["ratio"], "n_selected": metrics.get("n_selected"),
        "label_mode": trial["label_mode"], "tau": trial["tau"], "lam": trial["lam"],
        "eps": trial["eps"], "beta": trial["beta"], "seed": trial["seed"],
        "budget": json.dumps(trial["budget"], sort_keys=True),
        "teacher_key": trial["teacher_key"], "teacher_test_acc": teacher_acc,
        **{k: metrics.get(k) for k in ("test_acc", "test_top5", "test_nll", "test_ece")},
        "epochs_run": metrics.get("epochs_run", 0.0),
        "stopped_early": status == "stopped", "select_seconds": select_seconds,
        "train_seconds": metrics.get("train_seconds", 0.0),
        "peak_memory_bytes": metrics.get("peak_memory_bytes"),
        "device": metrics.get("device", "unknown"), **versions,
        "started_at": started, "finished_at": finished,
    }


def versions() -> dict[str, str | None]:
    import ray
    import torch

    return {"coretune_version": coretune.__version__, "git_sha": _git_sha(),
            "torch_version": torch.__version__, "ray_version": ray.__version__}


def now() -> datetime:
    return datetime.now(UTC)


def write_results(plan: Plan, rows: list[dict], curves: list[dict],
                  selections: list[dict]) -> None:
    """Append this run's rows to the sweep's Parquet files (atomic; earlier rows kept)."""
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    out = plan.out_dir
    report_schema.append_parquet_atomic(report_schema.to_table(rows, report_schema.TRIALS),
                                        out / "trials.parquet", ["sweep", "trial_id"])
    if curves:
        report_schema.append_parquet_atomic(
            report_schema.to_table(curves, report_schema.CURVES), out / "curves.parquet",
            ["sweep", "trial_id", "epoch"])
    if selections:
        report_schema.append_parquet_atomic(
            report_schema.to_table(selections, report_schema.SELECTIONS),
            out / "selections.parquet", ["selection_key", "index"])


def selection_rows(key: str, trial: dict, indices: np.ndarray,
                   weights: np.ndarray | None) -> list[dict]:
    base = {"selection_key": key, "dataset": trial["dataset"], "selector": trial["selector"],
            "selector_args": json.dumps(trial["selector_args"], sort_keys=True),
            "ratio": trial["ratio"], "seed": trial["seed"]}
    w = [None] * len(indices) if weights is None else weights.tolist()
    return [{**base, "index": int(i), "weight": wi} for i, wi in zip(indices.tolist(), w,
                                                                     strict=True)]


def curve_rows(trial: dict, frame: pd.DataFrame | None) -> list[dict]:
    if frame is None or frame.empty or "epoch" not in frame:
        return []
    cols = ["epoch", "step", "coreset_epochs", "train_loss", "test_acc", "test_top5",
            "test_nll", "test_ece"]
    frame = frame[[c for c in cols if c in frame]].dropna(subset=["epoch"])
    return [{"sweep": trial["sweep"], "trial_id": trial["trial_id"], **rec}
            for rec in frame.to_dict("records")]
