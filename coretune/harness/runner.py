"""Run a planned sweep on Ray Tune and write its Parquet files."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from coretune.harness.sweep import (
    Plan,
    _init_ray,
    curve_rows,
    now,
    plan_sweep,
    resolve_artifacts,
    selection_rows,
    trial_row,
    versions,
    write_results,
)
from coretune.harness.trial import selection_for


@dataclass
class SweepSummary:
    """What a sweep did, and where its time went."""

    out_dir: str
    trials_total: int
    trials_run: int
    trials_skipped: int
    status_counts: dict[str, int]
    wall_seconds: float
    artifact_seconds: float
    tune_seconds: float
    trial_body_seconds: float
    concurrency: int
    ray_overhead_share: float
    teacher_test_acc: dict[str, float]
    teacher_service: dict[str, dict]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ProgressCallback(tune.Callback):
    """Advances a rich progress bar per finished trial; pickles without the bar."""

    def __init__(self, progress: Progress, task: Any):
        self.progress, self.task = progress, task

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.progress = self.task = None

    def _advance(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._advance()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._advance()


def _scheduler(plan: Plan, override: str | None):

    sch = plan.spec.scheduler
    name = override or sch.name
    if name == "fifo":
        return FIFOScheduler()
    if name != "asha":
        raise ValueError(f"--scheduler must be 'fifo' or 'asha', got {name!r}")
    return ASHAScheduler(time_attr="training_iteration", max_t=plan.spec.budget.max_reports,
                         grace_period=sch.grace_period, reduction_factor=sch.reduction_factor)


def run_tune(plan: Plan, scheduler: str | None = None, console: Console | None = None
             ) -> SweepSummary:
    """Resolve artifacts, create teacher actors, run the trials, write Parquet."""
    import ray

    from coretune.harness.trainable import TeacherActor, coretune_trainable, teacher_actor_name

    console = console or Console()
    wall_started = time.perf_counter()
    teachers, dynamics, artifact_seconds = resolve_artifacts(plan)
    teacher_acc = {k: float(a.meta["test_acc"]) for k, a in teachers.items()}

    selections, sel_rows, sel_seconds = {}, [], {}
    for t in plan.trials:
        key = t["selection_key"]
        if key in selections:
            continue
        dyn = None if t["dynamics_key"] is None else dynamics[t["dynamics_key"]]
        art, _ = selection_for(plan.store, plan.datasets[t["dataset"]], t, dyn)
        weights = art.array("weights") if "weights.npy" in art.meta["files"] else None
        selections[key] = (art.array("indices"), weights)
        sel_seconds[key] = float(art.meta["select_seconds"])
        sel_rows += selection_rows(key, t, selections[key][0], weights)

    res = plan.spec.resources
    actors = []
    for key, (ds_name, _) in plan.teachers.items():
        logits_ref = ray.put(teachers[key].array("train_logits"))
        actors.append(TeacherActor.options(
            name=teacher_actor_name(plan.spec.name, key), get_if_exists=True,
            num_gpus=res.teacher_gpu,
        ).remote(plan.datasets[ds_name], str(plan.store.root), key, [logits_ref],
                 "cuda" if res.teacher_gpu > 0 else "cpu"))
    ray.get([a.info.remote() for a in actors])

    trainable = tune.with_resources(
        tune.with_parameters(coretune_trainable, datasets=plan.datasets, selections=selections,
                             cpus_per_trial=res.cpu),
        {"cpu": res.cpu, "gpu": res.gpu})
    total_cpus = ray.cluster_resources().get("CPU", 1.0)
    total_gpus = ray.cluster_resources().get("GPU", 0.0)
    concurrency = int(max(1, min(len(plan.trials), total_cpus // res.cpu,
                                 total_gpus // res.gpu if res.gpu else float("inf"))))
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=False)
    task = progress.add_task(f"sweep {plan.spec.name}", total=len(plan.trials))
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(plan.trials)},
        tune_config=tune.TuneConfig(metric="test_acc", mode="max", reuse_actors=True,
                                    scheduler=_scheduler(plan, scheduler)),
        run_config=tune.RunConfig(name=plan.spec.name, storage_path=str(plan.out_dir / "tune"),
                                  verbose=0, callbacks=[_ProgressCallback(progress, task)],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress bar replaces Tune's tables
    tune_started = now()
    t0 = time.perf_counter()
    with progress:
        grid = tuner.fit()
    tune_seconds = time.perf_counter() - t0
    finished = now()

    vers = versions()
    rows, curves, body = [], [], 0.0
    for result in grid:
        t = result.config["trial"]
        metrics = result.metrics or {}
        error = None if result.error is None else f"{type(result.error).__name__}: " \
                                                  f"{str(result.error).strip()[-2000:]}"
        rows.append(trial_row(t, metrics, error, vers, teacher_acc.get(t["teacher_key"]),
                              sel_seconds[t["selection_key"]], tune_started, finished))
        curves += curve_rows(t, result.metrics_dataframe)
        body += float(metrics.get("body_seconds") or 0.0)
    write_results(plan, rows, curves, sel_rows)
    teacher_service = {info["key"]: info for info in ray.get([a.info.remote() for a in actors])}
    for a in actors:
        ray.kill(a)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = SweepSummary(
        out_dir=str(plan.out_dir), trials_total=len(plan.trials) + plan.skipped,
        trials_run=len(plan.trials), trials_skipped=plan.skipped, status_counts=counts,
        wall_seconds=time.perf_counter() - wall_started, artifact_seconds=artifact_seconds,
        tune_seconds=tune_seconds, trial_body_seconds=body, concurrency=concurrency,
        ray_overhead_share=max(0.0, 1.0 - body / max(tune_seconds * concurrency, 1e-9)),
        teacher_test_acc=teacher_acc, teacher_service=teacher_service)
    (plan.out_dir / "sweep_summary.json").write_text(json.dumps(summary.as_dict(), indent=1))
    return summary


def run_sweep(spec_path: str | Path, out_dir: str | Path, *, address: str | None = None,
              scheduler: str | None = None, cache_dir: str | Path | None = None,
              data_root: str | None = None, download: bool = False,
              console: Console | None = None) -> SweepSummary:
    """Validate (before Ray starts), then run the sweep. Skips trials already ``ok``."""
    import ray

    plan = plan_sweep(spec_path, out_dir, cache_dir, data_root, download)
    started_here = _init_ray(address)
    try:
        return run_tune(plan, scheduler, console)
    finally:
        if started_here:
            ray.shutdown()
