"""Run a plan on Ray: build missing artifacts as tasks, start teacher actors, run Tune.

Rows are written as part files while the sweep runs: a Tune callback on the driver
(:mod:`coretune.driver.results_writer`) writes each Tune trial's students the moment it
completes, errors or is stopped, so a killed driver loses only the trials still running.
Trials lost with their node run again in a fresh Tune pass.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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
from coretune.driver.loggers import logger_names
from coretune.driver.plan import Plan, check_resources, check_shared, plan_sweep
from coretune.driver.results_writer import NODE_LOSS_PASSES, ResultWriter
from coretune.driver.student_logs import StudentLogs, student_logs
from coretune.driver.teachers import start_teachers, teacher_totals
from coretune.driver.worker import NAMESPACE, Group, RunRefs, TeacherActor, coretune_trainable
from coretune.errors import ClusterError, UsageError
from coretune.reports.rows import selection_rows


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
    node_loss_reruns: int = 0  # Tune trials re-run in a fresh pass after their node died
    parts_compacted: int = 0  # result part files merged at the end (ResultsStore.compact)

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
             quiet: bool = False, reuse_actors: bool = True,
             logs: StudentLogs | None = None) -> SweepSummary:
    """Build artifacts, start teacher actors, run the Tune trials, write Parquet parts
    (and each student's run to the ``--log`` loggers in ``logs``)."""
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

    groups = [Group(group_id=f"g{i:05d}-{g[0].trial_id}", metric=plan.spec.metric,
                    fuse=plan.spec.fuse, compile=plan.spec.compile, teachers=teachers,
                    students=[{**s.payload(), "run_id": run_id} for s in g])
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
    writer = ResultWriter(plan, teacher_acc, select_seconds, progress, task, logs)
    t0 = time.perf_counter()
    reruns, pending = 0, groups
    with progress:
        for attempt in range(NODE_LOSS_PASSES + 1):
            # A trial on a node that dies may have its retries burnt at once on its own
            # (dead) reused actor; such trials run again in a fresh Tune pass, whose
            # actors start on the nodes alive
            writer.defer_lost, writer.lost = attempt < NODE_LOSS_PASSES, []
            name = plan.spec.name if attempt == 0 else f"{plan.spec.name}-rerun{attempt}"
            _tuner(plan, trainable, pending, writer, scheduler, reuse_actors, name).fit()
            if not writer.lost:
                break
            pending = writer.lost
            reruns += len(pending)
            if not quiet:
                console.print(f"{len(pending)} Tune trial(s) lost with their node: "
                              f"running them again on the nodes alive")
    tune_seconds = time.perf_counter() - t0

    compacted = plan.results.compact()  # under the lease ``execute`` holds
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
        teacher_test_acc=teacher_acc, teacher_service=teacher_service,
        node_loss_reruns=reruns, parts_compacted=sum(n for n, _ in compacted.values()))
    plan.results.write_text("sweep_summary.json", json.dumps(summary.as_dict(), indent=1))
    return summary


def _tuner(plan: Plan, trainable, groups: list[dict], writer: ResultWriter,
           scheduler: str | None, reuse_actors: bool, name: str) -> tune.Tuner:
    """One Tune experiment over ``groups`` (one Tune trial each), writing through ``writer``."""
    return tune.Tuner(
        trainable,
        param_space={"group": tune.grid_search(groups)},
        tune_config=tune.TuneConfig(metric=plan.spec.metric, mode=plan.spec.metric_mode,
                                    reuse_actors=reuse_actors,
                                    scheduler=_scheduler(plan, scheduler)),
        run_config=tune.RunConfig(name=name, storage_path=tune_storage(plan),
                                  verbose=0, callbacks=[writer],
                                  failure_config=tune.FailureConfig(
                                      max_failures=plan.spec.retries)),
    )


def run_sweep(spec: str | Path, out: str | Path, *, address: str | None = None,
              scheduler: str | None = None, cache: str | Path | None = None,
              data_root: str | None = None, download: bool = False,
              allow_node_local: bool = False, console: Console | None = None,
              quiet: bool = False, loggers: Sequence[str] = ()) -> SweepSummary:
    """Validate (before Ray starts), then run the sweep. Skips students already ``ok``.
    ``loggers``: ``--log`` names (:mod:`coretune.driver.loggers`)."""
    plan = plan_sweep(spec, out, cache, data_root, download,
                      cluster=address is not None and not allow_node_local)
    plan.allow_node_local = allow_node_local
    return execute(plan, address, scheduler, console, quiet, logger_names(loggers))


def execute(plan: Plan, address: str | None = None, scheduler: str | None = None,
            console: Console | None = None, quiet: bool = False,
            loggers: Sequence[str] = ()) -> SweepSummary:
    """Run a plan: hold the output's lease, start or join Ray, run, shut down what we started.
    ``loggers``: checked ``--log`` names; each student is also a run in each of them."""
    if not plan.trials:
        return empty_summary(plan)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress bar replaces Tune's tables
    logs = student_logs(loggers, plan)  # refused before Ray starts
    with plan.results.lease():  # one driver per output; refused before Ray starts
        started_here = init_ray(address)
        try:
            return run_plan(plan, scheduler, console, quiet, logs=logs)
        finally:
            if logs is not None:  # the runs still open end as interrupted
                logs.close()
            if started_here:
                ray.shutdown()


def empty_summary(plan: Plan) -> SweepSummary:
    return SweepSummary(plan.results.uri, plan.skipped, 0, 0, False, plan.skipped, 0, {}, 0.0,
                        0.0, 0, 0.0, 0.0, 0, 0.0, {}, {})
