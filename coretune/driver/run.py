"""Run a plan on Ray: build missing artifacts as tasks, start teacher actors, run Tune.

Rows are written as part files while the sweep runs: a Tune callback on the driver writes
each Tune trial's students (curves first, then the trial rows) the moment it completes,
errors or is stopped, so a killed driver loses only the trials still running.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from coretune.artifacts.graph import get_kind
from coretune.artifacts.selection import load_selection
from coretune.driver.build import build_artifacts, tune_storage
from coretune.driver.plan import Plan, PlannedTrial, check_resources, check_shared, plan_sweep
from coretune.driver.teachers import start_teachers, teacher_totals
from coretune.driver.worker import NAMESPACE, RunRefs, TeacherActor, coretune_trainable
from coretune.errors import ClusterError, UsageError
from coretune.reports.results import ResultsStore
from coretune.reports.rows import curve_rows, now, selection_rows, trial_row, versions


@dataclass
class SweepSummary:
    """What a sweep did, and where its time went."""

    out_dir: str
    trials_total: int
    trials_run: int
    trials_finished: int  # rows written by this run (fewer than trials_run if interrupted)
    interrupted: bool
    trials_skipped: int
    tune_trials: int
    status_counts: dict[str, int]
    wall_seconds: float
    artifact_seconds: float
    artifacts_built: int
    tune_seconds: float
    trial_body_seconds: float
    concurrency: int
    ray_overhead_share: float
    teacher_test_acc: dict[str, float]
    teacher_service: dict[str, dict]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def init_ray(address: str | None) -> bool:
    """Join the cluster at ``address``, or start Ray on this machine when there is none
    (``address="local"``: never attach silently to a cluster ``ray start`` left running).
    True if this call connected."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address or "local", namespace=NAMESPACE, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR", configure_logging=True)
    except ConnectionError as err:
        raise ClusterError(f"--address {address}: cannot join the Ray cluster "
                           f"({' '.join(str(err).split())})") from None
    return True


def _write_kind_tables(plan: Plan) -> None:
    """Each result table a kind declares (``results_table``; ELFS's β curves), filled with
    the rows of the plan's nodes of that kind that the table does not hold yet — one part
    file per table. No kind is named here: the kind says table, key column and rows."""
    tables: dict[str, list] = {}
    for node in plan.nodes:
        kind = get_kind(node.kind)
        if kind.results_table is not None:
            tables.setdefault(kind.results_table, []).append((kind, node))
    for table, entries in tables.items():
        have = {col: set(plan.results.read(table)[col])
                for col in {kind.results_key for kind, _ in entries}}
        rows = [row for kind, node in entries if node.key not in have[kind.results_key]
                for row in kind.results_rows(plan.spec.name, node, plan.store.load(node.key))]
        plan.results.write(table, rows)


class _ResultWriter(tune.Callback):
    """Writes each Tune trial's students as part files the moment the trial ends."""

    def __init__(self, plan: Plan, teacher_acc: dict[str, float], select_seconds: dict,
                 progress: Progress | None, task: Any):
        self.results: ResultsStore = plan.results
        self.students = {s.trial_id: s for group in plan.groups for s in group}
        self.teacher_acc, self.select_seconds = teacher_acc, select_seconds
        self.chosen_beta = plan.chosen_beta
        self.progress, self.task = progress, task
        self.versions = versions()
        self.curves: dict[str, dict[str, list[dict]]] = {}
        self.last: dict[str, dict[str, dict]] = {}
        self.rows: list[dict] = []
        self.retries: dict[str, int] = {}
        self.body_seconds = 0.0
        self.metric, self.mode = plan.spec.metric, plan.spec.metric_mode
        self.running, self.failed, self.best = 0, 0, None
        self.total = len(plan.trials)

    def _show(self) -> None:
        if self.progress is None:
            return
        best = "–" if self.best is None else f"{self.best:.4g}"
        self.progress.update(self.task, completed=len(self.rows), running=self.running,
                             pending=self.total - len(self.rows) - self.running,
                             failed=self.failed, best=f"{self.metric} {best}")

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running += len(trial.config["group"]["students"])
        self._show()

    def __getstate__(self) -> dict:  # Tune may pickle callbacks; the writer stays here
        return {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        students = result.get("students") or {}
        self.last[trial.trial_id] = students
        curves = self.curves.setdefault(trial.trial_id, {})
        for sid, metrics in students.items():
            seen = curves.setdefault(sid, [])
            if not seen or seen[-1].get("epoch") != metrics.get("epoch"):
                seen.append(metrics)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A failed Tune trial that will be re-run from scratch: forget its reports."""
        self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1
        self.last.pop(trial.trial_id, None)
        self.curves.pop(trial.trial_id, None)

    def _finish(self, trial, error: str | None) -> None:
        group = trial.config["group"]
        last = self.last.pop(trial.trial_id, {})
        if trial.last_result:
            self.body_seconds += float(trial.last_result.get("body_seconds") or 0.0)
        curves = self.curves.pop(trial.trial_id, {})
        rows, curve_parts = [], []
        for student in group["students"]:
            planned: PlannedTrial = self.students[student["trial_id"]]
            metrics = last.get(planned.trial_id, {})
            ended = bool(metrics.get("final")) or metrics.get("diverged_at_step") is not None
            if error and not ended:  # no partial metrics presented as a result
                metrics = {k: metrics[k] for k in ("n_selected", "device") if k in metrics}
            rows.append(trial_row(
                planned.spec, planned.trial_id, metrics, None if ended else error,
                self.versions, teacher_key=planned.teacher_key,
                teacher_acc=self.teacher_acc.get(planned.teacher_key),
                select_seconds=self.select_seconds.get(planned.selection.key, 0.0),
                started=_when(metrics.get("started_at")), finished=_when(
                    metrics.get("finished_at")),
                fingerprint=planned.fingerprint, selection_key=planned.selection.key,
                group_id=group["group_id"]))
            rows[-1]["retries"] = self.retries.get(trial.trial_id, 0)
            if rows[-1]["beta"] is None:  # β chosen by a search (ELFS ``beta: auto``)
                rows[-1]["beta"] = self.chosen_beta.get(planned.selection.key)
            curve_parts += curve_rows(planned.spec.sweep, planned.trial_id,
                                      curves.get(planned.trial_id, []))
        self.results.write("curves", curve_parts)  # curves first: the trial row commits
        self.results.write("trials", rows)
        self.rows += rows
        self.running = max(0, self.running - len(rows))
        self.failed += sum(r["status"] in ("error", "diverged") for r in rows)
        for r in rows:
            value = r.get(self.metric)
            if r["status"] == "ok" and value is not None and (self.best is None or (
                    value > self.best if self.mode == "max" else value < self.best)):
                self.best = value
        self._show()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, _trial_error(trial)[-2000:])


def _trial_error(trial) -> str:
    """The latest error of a Tune trial, read from its local error files (the copies in
    Tune's storage are synced later and may still hold an earlier attempt's error)."""
    import cloudpickle

    try:
        if trial.pickled_error_file and os.path.isfile(trial.pickled_error_file):
            with open(trial.pickled_error_file, "rb") as fh:
                err = cloudpickle.load(fh)
            return f"{type(err).__name__}: {str(err).strip()}"
        if trial.error_file and os.path.isfile(trial.error_file):
            return Path(trial.error_file).read_text().strip()
    except Exception as exc:  # noqa: BLE001 - the message is best effort, the row is not
        return f"error of unknown kind (its record could not be read: {exc})"
    return "error of unknown kind"


def _when(iso: str | None) -> datetime:
    return now() if not iso else datetime.fromisoformat(iso)


def _scheduler(plan: Plan, override: str | None):
    sch = plan.spec.scheduler
    name = override or sch.name
    if name == "fifo":
        return FIFOScheduler()
    if name != "asha":
        raise UsageError(f"--scheduler must be 'fifo' or 'asha', got {name!r}")
    return ASHAScheduler(time_attr="training_iteration", max_t=plan.spec.budget.max_reports,
                         grace_period=sch.grace_period, reduction_factor=sch.reduction_factor)


def _write_selections(plan: Plan) -> dict[str, float]:
    """Selection rows for coresets the results do not hold yet; select seconds by key."""
    have = set(plan.results.read("selections")["selection_key"])
    rows, seconds = [], {}
    for group in plan.groups:
        for s in group:
            key = s.selection.key
            if key in seconds:
                continue
            art = plan.store.load(key)
            seconds[key] = float(art.meta.get("select_seconds", 0.0))
            if art.meta.get("beta") is not None:
                plan.chosen_beta[key] = float(art.meta["beta"])
            if key not in have:
                rows += selection_rows(key, s.spec, *load_selection(art))
    plan.results.write("selections", rows)
    return seconds


def run_plan(plan: Plan, scheduler: str | None = None, console: Console | None = None,
             quiet: bool = False, reuse_actors: bool = True) -> SweepSummary:
    """Build artifacts, start teacher actors, run the Tune trials, write Parquet parts."""
    console = console or Console()
    wall_started = time.perf_counter()
    if sum(bool(n.get("Alive")) for n in ray.nodes()) > 1 and not plan.allow_node_local:
        check_shared(plan.store.uri, plan.results.uri)
    check_resources(plan.spec, ray.cluster_resources(), "the Ray cluster")
    artifact_seconds, built = build_artifacts(plan, console, quiet)
    teacher_keys = {s.teacher_key: s for g in plan.groups for s in g if s.teacher_key}
    teacher_acc = {k: float(plan.store.load(k).meta["test_acc"]) for k in teacher_keys}
    select_seconds = _write_selections(plan)
    _write_kind_tables(plan)

    res = plan.spec.resources
    run_id = f"{plan.spec.name}-{uuid.uuid4().hex[:10]}"
    actors = []
    # on the driver's node: it lives exactly as long as the objects' owner, this driver
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    run_refs = RunRefs.options(name=f"{run_id}:refs", namespace=NAMESPACE,
                               scheduling_strategy=here).remote()
    for key, student in teacher_keys.items():
        ray.get(run_refs.put.remote(key, [ray.put(plan.datasets[student.data_key]),
                                          ray.put(plan.store.load(key).array("train_logits"))]))
    actors, teachers = start_teachers(plan, run_id, f"{run_id}:refs",
                                      "cuda" if res.teacher_gpu > 0 else "cpu",
                                      TeacherActor, NAMESPACE)
    ray.get([a.info.remote() for a in actors])

    groups = [{"group_id": f"g{i:05d}-{g[0].trial_id}", "metric": plan.spec.metric,
               "fuse": plan.spec.fuse, "compile": plan.spec.compile, "teachers": teachers,
               "students": [{**s.payload(), "run_id": run_id} for s in g]}
              for i, g in enumerate(plan.groups)]
    trainable = tune.with_resources(
        tune.with_parameters(coretune_trainable, datasets=plan.datasets,
                             store_uri=plan.store.uri, plugins=list(plan.spec.plugins),
                             cpus_per_trial=res.cpu),
        {"cpu": res.cpu, "gpu": res.gpu})
    total_cpus = ray.cluster_resources().get("CPU", 1.0)
    total_gpus = ray.cluster_resources().get("GPU", 0.0)
    concurrency = int(max(1, min(len(groups), total_cpus // res.cpu,
                                 total_gpus // res.gpu if res.gpu else float("inf"))))
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("running {task.fields[running]} · pending {task.fields[pending]} · "
                   "failed {task.fields[failed]} · best {task.fields[best]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
        transient=False, disable=quiet)
    task = progress.add_task(f"sweep {plan.spec.name}", total=len(plan.trials), running=0,
                             pending=len(plan.trials), failed=0, best="–")
    writer = _ResultWriter(plan, teacher_acc, select_seconds, progress, task)
    tuner = tune.Tuner(
        trainable,
        param_space={"group": tune.grid_search(groups)},
        tune_config=tune.TuneConfig(metric=plan.spec.metric, mode=plan.spec.metric_mode,
                                    reuse_actors=reuse_actors,
                                    scheduler=_scheduler(plan, scheduler)),
        run_config=tune.RunConfig(name=plan.spec.name, storage_path=tune_storage(plan),
                                  verbose=0, callbacks=[writer],
                                  failure_config=tune.FailureConfig(
                                      max_failures=plan.spec.retries)),
    )
    t0 = time.perf_counter()
    with progress:
        tuner.fit()
    tune_seconds = time.perf_counter() - t0

    teacher_service = teacher_totals(ray.get([a.info.remote() for a in actors]), teachers)
    for a in [*actors, run_refs]:
        ray.kill(a)
    counts: dict[str, int] = {}
    for r in writer.rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = SweepSummary(
        out_dir=plan.results.uri, trials_total=len(plan.trials) + plan.skipped,
        trials_run=len(plan.trials), trials_finished=len(writer.rows),
        interrupted=len(writer.rows) < len(plan.trials), trials_skipped=plan.skipped,
        tune_trials=len(groups),
        status_counts=counts, wall_seconds=time.perf_counter() - wall_started,
        artifact_seconds=artifact_seconds, artifacts_built=built, tune_seconds=tune_seconds,
        trial_body_seconds=writer.body_seconds, concurrency=concurrency,
        ray_overhead_share=max(0.0, 1.0 - writer.body_seconds
                               / max(tune_seconds * concurrency, 1e-9)),
        teacher_test_acc=teacher_acc, teacher_service=teacher_service)
    plan.results.write_text("sweep_summary.json", json.dumps(summary.as_dict(), indent=1))
    return summary


def run_sweep(spec: str | Path, out: str | Path, *, address: str | None = None,
              scheduler: str | None = None, cache: str | Path | None = None,
              data_root: str | None = None, download: bool = False,
              allow_node_local: bool = False, console: Console | None = None,
              quiet: bool = False) -> SweepSummary:
    """Validate (before Ray starts), then run the sweep. Skips students already ``ok``."""
    plan = plan_sweep(spec, out, cache, data_root, download,
                      cluster=address is not None and not allow_node_local)
    plan.allow_node_local = allow_node_local
    return execute(plan, address, scheduler, console, quiet)


def execute(plan: Plan, address: str | None = None, scheduler: str | None = None,
            console: Console | None = None, quiet: bool = False) -> SweepSummary:
    """Run a plan: hold the output's lease, start or join Ray, run, shut down what we started."""
    if not plan.trials:
        return empty_summary(plan)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress bar replaces Tune's tables
    with plan.results.lease():  # one driver per output; refused before Ray starts
        started_here = init_ray(address)
        try:
            return run_plan(plan, scheduler, console, quiet)
        finally:
            if started_here:
                ray.shutdown()


def empty_summary(plan: Plan) -> SweepSummary:
    return SweepSummary(plan.results.uri, plan.skipped, 0, 0, False, plan.skipped, 0, {}, 0.0,
                        0.0, 0, 0.0, 0.0, 0, 0.0, {}, {})
